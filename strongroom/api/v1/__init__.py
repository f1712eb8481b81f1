"""Karbor v1 controllers: one module per collection, each handler ``(ApiRequest, **route_args) -> Result``."""
