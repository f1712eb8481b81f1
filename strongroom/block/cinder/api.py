"""Cinder's v3 REST API through a keystoneauth session: who we are, which microversion, what errors mean.

With Keystone the session carries a password or application-credential plugin and finds Cinder in the
catalogue (``endpoint`` overrides it); with ``noauth`` (a Cinder without Keystone) the endpoint is given
and the identity is the ``X-Auth-Token: user:project`` header that Cinder's noauth middleware reads.  The
microversion is the lower of the newest this backend knows and the newest the server announces at its
version document, read once.

Every failure to reach Cinder (refused, timed out, a 502/503/504) is
:class:`~strongroom.exceptions.BlockUnavailable` naming Cinder and where it was looked for; a refusal
(401/403) names the role the user lacks; nothing quotes a credential.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from strongroom import exceptions, redaction
from strongroom.block.cinder.options import MAX_MICROVERSION, CinderConfig

LOG = logging.getLogger("strongroom.block.cinder")

BACKEND = "cinder"


def _session_pieces(config: CinderConfig, token: str | None = None, endpoint: str | None = None
                    ) -> tuple[Any, Any]:
    """A keystoneauth ``Session`` and the auth plugin it uses (None for noauth): the configured identity's,
    or, given a user's ``token``, one that sends that token to Cinder at ``endpoint``."""
    from keystoneauth1 import loading, session, token_endpoint

    auth: Any = None
    if token is not None:
        auth = token_endpoint.Token(endpoint, token)
    elif config.auth_type != "noauth":
        wanted = {"password": ("auth_url", "username", "user_id", "password", "user_domain_name", "project_id",
                               "project_name", "project_domain_name"),
                  "v3applicationcredential": ("auth_url", "application_credential_id",
                                              "application_credential_secret")}[config.auth_type]
        loader: Any = loading.get_plugin_loader(config.auth_type)
        auth = loader.load_from_options(**{k: v for k, v in config.auth.items() if k in wanted})
    verify: bool | str = config.cafile or True
    return session.Session(auth=auth, verify=verify, timeout=config.timeout), auth


class CinderApi:
    """Requests to one Cinder as one project.  Thread-safe (a requests session per keystoneauth session).

    Given a user's ``token`` (and the ``endpoint`` the configured identity found), requests carry that token
    and act in its project, ``project_id``; the token is never shown (``repr``, messages)."""

    def __init__(self, config: CinderConfig, project_id: str | None = None, *, token: str | None = None,
                 endpoint: str | None = None, version: tuple[int, int] | None = None) -> None:
        self.config = config
        self._project_id = project_id or config.project_id
        self._user_token = token is not None
        self._fixed_endpoint = endpoint
        self._session, self._auth = _session_pieces(config, token, endpoint)
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = version
        self._secrets = [str(config.auth.get(k) or "") for k in ("password", "application_credential_secret")]
        if token:
            self._secrets.append(token)

    def __repr__(self) -> str:
        return f"CinderApi(where={self.config.where!r}, project={self._project_id!r})"

    @property
    def project_id(self) -> str | None:
        """The project requests act in: noauth's ``project_id``; with Keystone the configured one, else the
        one Keystone scoped the token to (asked once; a refused password is ``BlockUnavailable`` naming the
        cinder block backend, the user and Keystone)."""
        if self._project_id is None and self._auth is not None:
            with self._guard("authenticating with Keystone"):
                found = self._auth.get_project_id(self._session)
            with self._lock:
                self._project_id = str(found) if found else None
        return self._project_id

    @property
    def identity(self) -> str:
        """Who the configured credentials say we are, for messages (never a secret)."""
        if self._user_token:
            return f"the requesting user's token, project {self._project_id}"
        auth = self.config.auth
        if self.config.auth_type == "v3applicationcredential":
            return f"application credential {auth.get('application_credential_id')}"
        user = auth.get("username") or auth.get("user_id")
        project = auth.get("project_name") or auth.get("project_id")
        return f"user {user}" + (f", project {project}" if project else "")

    @property
    def known_version(self) -> tuple[int, int] | None:
        """The negotiated microversion if already read (:meth:`microversion`), else None."""
        return self._version

    @property
    def known_project_id(self) -> str | None:
        """:attr:`project_id` if already known, without asking Keystone (for descriptions)."""
        return self._project_id

    @property
    def what(self) -> str:
        return f"Cinder at {self.config.where}"

    # -- requests ---------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.config.auth_type == "noauth":
            project = self.project_id or "admin"
            headers["X-Auth-Token"] = f"strongroom:{project}"
        return headers

    def _endpoint(self) -> str:
        if self._fixed_endpoint:
            return self._fixed_endpoint.rstrip("/")
        if self.config.endpoint:
            return self.config.endpoint.rstrip("/")
        with self._guard("finding Cinder in the catalogue"):
            found = self._session.get_endpoint(service_type="block-storage", interface=self.config.interface,
                                               region_name=self.config.region_name)
        if not found:
            raise exceptions.ConfigError(reason="cinder block backend: no block-storage endpoint in the catalogue")
        return str(found).rstrip("/")

    def endpoint(self) -> str:
        """Cinder's v3 endpoint: ``endpoint``, else the catalogue's (asked of Keystone)."""
        return self._endpoint()

    def microversion(self) -> tuple[int, int]:
        """The microversion every request names: the server's newest, capped at what we know."""
        with self._lock:
            if self._version is None:
                doc = self._raw("GET", self._endpoint() + "/", "reading Cinder's versions", versioned=False)
                self._version = _negotiate(doc)
            return self._version

    def request(self, method: str, path: str, doing: str, json: Any = None,
                not_found: Callable[[], exceptions.StrongroomError] | None = None,
                params: dict[str, Any] | None = None) -> Any:
        """The JSON answer of ``method path`` (None for an empty body)."""
        self.microversion()
        query = ("?" + "&".join(f"{k}={v}" for k, v in params.items())) if params else ""
        return self._raw(method, self._endpoint() + path + query, doing, json=json, not_found=not_found)

    def _raw(self, method: str, url: str, doing: str, json: Any = None,
             not_found: Callable[[], exceptions.StrongroomError] | None = None, versioned: bool = True) -> Any:
        headers = self._headers()
        if versioned and self._version is not None:
            headers["OpenStack-API-Version"] = "volume {}.{}".format(*self._version)
        with self._guard(doing):
            answer = self._session.request(url, method, json=json, headers=headers, raise_exc=False,
                                           authenticated=self._auth is not None, connect_retries=1)
        code = answer.status_code
        if code == 404 and not_found is not None:
            raise not_found()
        if code >= 400:
            raise self._refusal(code, doing, _message(answer))
        if not answer.content:
            return None
        try:
            return answer.json()
        except ValueError as err:
            raise exceptions.BlockError(reason=f"{self.what}: {doing}: the answer is not JSON") from err

    def _refusal(self, code: int, doing: str, message: str) -> exceptions.StrongroomError:
        if code in (502, 503, 504):
            return exceptions.BlockUnavailable(backend=self.what, reason=f"{doing}: HTTP {code} {message}")
        if code == 401 and self._user_token:
            return exceptions.Forbidden(
                reason=f"cinder block backend: {self.what}: {doing} was refused (HTTP 401): the user's token is "
                "not valid for Cinder (expired or revoked)")
        if code in (401, 403):
            return exceptions.BlockError(
                reason=f"{self.what}: {doing} was refused (HTTP {code}): the user needs the member role of "
                "the project (see doc/block-cinder.md)")
        if code == 409:
            return exceptions.Conflict(reason=f"{self.what}: {doing}: {message}")
        if code in (400, 413):
            return exceptions.InvalidInput(reason=f"{self.what}: {doing}: {message}")
        if code == 404:
            return exceptions.NotFound(kind="Cinder resource", id=doing)
        return exceptions.BlockError(reason=f"{self.what}: {doing} failed: HTTP {code} {message}")

    def _guard(self, doing: str) -> Any:
        return _Guard(self, doing)

    def scrub(self, text: str) -> str:
        return redaction.scrub(text, self._secrets)


class _Guard:
    """keystoneauth's connection errors as ``BlockUnavailable`` naming Cinder."""

    def __init__(self, api: CinderApi, doing: str) -> None:
        self.api, self.doing = api, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: object) -> None:
        from keystoneauth1 import exceptions as ksa

        if err is None:
            return
        if isinstance(err, (ksa.ConnectFailure, ksa.ConnectTimeout, ksa.RetriableConnectionFailure,
                            ksa.DiscoveryFailure)):
            raise exceptions.BlockUnavailable(
                backend=self.api.what,
                reason=f"{self.doing}: Cinder did not answer ({type(err).__name__})") from None
        if isinstance(err, ksa.Unauthorized):  # the operator's to mend: 503 naming the backend, no secret
            raise exceptions.BlockUnavailable(
                backend=self.api.what,
                reason=f"{self.doing}: Keystone at {self.api.config.auth.get('auth_url')} refused the cinder "
                f"block backend's credentials ({self.api.identity}; auth_type {self.api.config.auth_type})"
                ) from None
        if isinstance(err, ksa.ClientException):
            raise exceptions.BlockError(
                reason=f"{self.api.what}: {self.doing}: {self.api.scrub(str(err))}") from None


def _message(answer: Any) -> str:
    """Cinder's own explanation of an error answer (its JSON ``message``), shortened."""
    try:
        body = answer.json()
        inner = next(iter(body.values())) if isinstance(body, dict) and body else body
        text = str(inner.get("message", inner)) if isinstance(inner, dict) else str(inner)
    except (ValueError, StopIteration):
        text = answer.text or ""
    return text.strip()[:300]


def _negotiate(doc: Any) -> tuple[int, int]:
    """The microversion to use, from Cinder's version document (``{"versions": [{"id": "v3.0",
    "version": "3.71"}, ...]}``); 3.0 if the server announces none."""
    best = (3, 0)
    for entry in (doc or {}).get("versions", []) if isinstance(doc, dict) else []:
        text = str(entry.get("version") or "")
        if str(entry.get("id", "")).startswith("v3") and text.count(".") == 1:
            major, minor = text.split(".")
            if major.isdigit() and minor.isdigit():
                best = max(best, min((int(major), int(minor)), MAX_MICROVERSION))
    return best
