"""Triggers, scheduled operations and retention (filled in by the scheduling work)."""
