"""Shipped protection plugins."""
