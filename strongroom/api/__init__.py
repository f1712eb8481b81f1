"""The REST API (Karbor v1 contract): ``make_app`` builds the WSGI app, ``APIServer`` hosts it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strongroom.api.app import make_app
    from strongroom.api.server import APIServer

__all__ = ["APIServer", "make_app"]


def __getattr__(name: str) -> Any:  # lazy: importing the package imports no WSGI machinery
    if name == "make_app":
        from strongroom.api.app import make_app

        return make_app
    if name == "APIServer":
        from strongroom.api.server import APIServer

        return APIServer
    raise AttributeError(name)
