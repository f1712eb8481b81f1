"""Authentication middleware: who is calling.

Each middleware leaves an :class:`Identity` in ``environ["strongroom.identity"]``; the application turns it
into a :class:`strongroom.context.RequestContext` for the project named in the URL and oslo.policy decides
(:mod:`strongroom.api.rules`).

- ``noauth`` (embedded default, loopback only): any ``X-Auth-Token``; the user is ``X-User-Id`` or
  ``noauth``; the caller is a member (and so a reader) of the URL's project, and an admin when the token equals
  ``admin_token`` (configured, or generated into the state directory: :mod:`strongroom.admin_token`).
- ``keystone``: keystonemiddleware's ``auth_token`` (configured from ``[keystone_authtoken]``, whose options
  it registers on our ``ConfigOpts`` when the pipeline is built, never at import) validates the token, then
  :class:`KeystoneContextMiddleware` reads the identity headers it sets.  A URL naming another project than
  the token's is refused (403) unless the caller is an administrator.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from oslo_config import cfg

from strongroom.api import errors

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

ENV_IDENTITY = "strongroom.identity"


@dataclasses.dataclass(frozen=True)
class Identity:
    user_id: str | None
    project_id: str | None  # the token's project; None when any project is accepted (noauth)
    roles: tuple[str, ...] = ("member", "reader")

    def __repr__(self) -> str:  # no token here by construction; keep it short
        return f"Identity(user_id={self.user_id!r}, project_id={self.project_id!r}, roles={self.roles!r})"


class NoAuthMiddleware:
    def __init__(self, app: WSGIApp, admin_token: str) -> None:
        self._app = app
        self._admin_token = admin_token

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        token = environ.get("HTTP_X_AUTH_TOKEN", "")
        admin = bool(self._admin_token) and hmac.compare_digest(token.encode(), self._admin_token.encode())
        user = environ.get("HTTP_X_USER_ID") or "noauth"
        roles = ("admin", "member", "reader") if admin else ("member", "reader")
        environ[ENV_IDENTITY] = Identity(user_id=user, project_id=None, roles=roles)
        return self._app(environ, start_response)


class KeystoneContextMiddleware:
    """Runs behind keystonemiddleware's ``auth_token``; turns its headers into an :class:`Identity`."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        identity = identity_from_headers(environ)
        if identity is None:
            resp = errors.error_response(401, "Authentication required: a valid X-Auth-Token is needed.")
            return resp(environ, start_response)  # type: ignore[no-any-return]
        environ[ENV_IDENTITY] = identity
        return self._app(environ, start_response)


def identity_from_headers(environ: dict[str, Any]) -> Identity | None:
    """The identity keystonemiddleware confirmed, or None when the token was not confirmed."""
    if environ.get("HTTP_X_IDENTITY_STATUS", "Confirmed") != "Confirmed":
        return None
    project = environ.get("HTTP_X_PROJECT_ID") or environ.get("HTTP_X_TENANT_ID")
    user = environ.get("HTTP_X_USER_ID") or environ.get("HTTP_X_USER")
    if not project or not user:
        return None
    roles = tuple(r.strip() for r in environ.get("HTTP_X_ROLES", "").split(",") if r.strip())
    return Identity(user_id=user, project_id=project, roles=roles)


def wrap(app: WSGIApp, conf: cfg.ConfigOpts, admin_token: str | None = None) -> WSGIApp:
    """Put the authentication middleware chosen by ``auth_strategy`` in front of ``app``."""
    if conf.auth_strategy == "keystone":
        from keystonemiddleware import auth_token

        inner = KeystoneContextMiddleware(app)
        return auth_token.AuthProtocol(inner, {"oslo_config_config": conf})  # type: ignore[no-any-return]
    return NoAuthMiddleware(app, admin_token if admin_token is not None else str(conf.admin_token or ""))
