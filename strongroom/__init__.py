"""Strongroom: a data-protection service with a Karbor v1 compatible API."""

__version__ = "0.1.0"
