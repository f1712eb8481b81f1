"""The WSGI application: request ids, versions, OpenAPI, authentication, routing, errors.

:func:`make_app` loads the pipeline of ``[api] api_paste_config`` (:mod:`strongroom.api.pipeline`); its
last three layers are ours, outermost first::

    RootApp            request id header on every response, body-size guard, "/", "/v1/", /v1/openapi.json
      auth middleware  noauth, or keystonemiddleware auth_token + KeystoneContextMiddleware
        V1App          Routes mapper over strongroom.api.routes -> controller -> JSON;
                       our exceptions -> HTTP (strongroom.api.errors)

The request id is oslo.middleware RequestId's (``openstack.request_id``) when it runs in front, else one of
ours; an incoming global request id (``openstack.global_request_id``) goes into the request context.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import routes
import webob
from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from strongroom import context as sr_context
from strongroom import exceptions
from strongroom.api import auth, errors, openapi, policy, rules, schemas
from strongroom.api.common import ApiRequest, Download, KnownProviders
from strongroom.api.routes import ROUTES, Route
from strongroom.context import get_context
from strongroom.protection.rpcapi import ProtectionAPI

LOG = logging.getLogger(__name__)

ENV_REQUEST_ID = "strongroom.request_id"
#: Where oslo.middleware's RequestId leaves the request id and a valid incoming global request id.
ENV_OSLO_REQUEST_ID = "openstack.request_id"
ENV_GLOBAL_REQUEST_ID = "openstack.global_request_id"
REQUEST_ID_HEADER = "X-Openstack-Request-Id"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def json_response(status: int, body: Any | None) -> webob.Response:
    resp = webob.Response(status=status)
    if body is None:
        resp.content_type = None
        resp.body = b""
    else:
        resp.content_type = "application/json"
        resp.charset = "utf-8"
        resp.body = json.dumps(body).encode("utf-8")
    return resp


def download_response(download: Download) -> webob.Response:
    """A 200 streaming ``download.body`` (the request id header is added by RootApp)."""
    resp = webob.Response(status=200, app_iter=download.body, content_type=download.content_type)
    if download.content_type.startswith("text/"):
        resp.charset = "utf-8"
    else:
        resp.charset = None
    if download.length is not None:
        resp.content_length = download.length
    if download.filename:
        quoted = urllib.parse.quote(download.filename, safe="")
        resp.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quoted}"
    return resp


class V1App:
    """Authenticated part: ``/v1/{project_id}/...``."""

    def __init__(self, conf: cfg.ConfigOpts, db: Any, protection: ProtectionAPI,
                 enforcer: oslo_policy.Enforcer) -> None:
        self._conf = conf
        self._db = db
        self._protection = protection
        self._enforcer = enforcer
        self._providers = KnownProviders(float(conf.api.provider_cache_ttl))
        self._mapper = routes.Mapper()
        for index, route in enumerate(ROUTES):
            self._mapper.connect(None, route.full_path, route_index=index,
                                 conditions={"method": [route.method]})
        self._any_method = routes.Mapper()
        for index, route in enumerate(ROUTES):
            self._any_method.connect(None, route.full_path, route_index=index)
        self._mapper.create_regs()
        self._any_method.create_regs()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = environ.get(ENV_REQUEST_ID) or new_request_id()
        http = webob.Request(environ)
        try:
            resp = self._dispatch(http, request_id)
        except Exception as err:  # noqa: BLE001 - every error becomes a JSON answer; 5xx are logged
            resp = errors.response_for(err, request_id)
        return resp(environ, start_response)  # type: ignore[no-any-return]

    def _match(self, http: webob.Request) -> tuple[Route, dict[str, str]]:
        path = request_path(http.environ) or "/"
        found = self._mapper.routematch(url=path, environ=http.environ)
        if found:
            match = found[0]
            route = ROUTES[int(match["route_index"])]
            args = {k: v for k, v in match.items() if k not in ("route_index", "controller", "action")}
            return route, args
        allowed = sorted({r.method for r in ROUTES
                          if _same_shape(self._any_method, path, r)})
        if allowed:
            raise errors.MethodNotAllowed(method=http.method, path=path, allow=allowed)
        raise exceptions.NotFound(kind="Resource", id=path)

    def _dispatch(self, http: webob.Request, request_id: str) -> webob.Response:
        route, args = self._match(http)
        schemas.check_parameters(args)  # 400 naming a path parameter that is no valid id
        check_query(http.environ.get("QUERY_STRING", ""))  # then one whose value is not UTF-8
        project_id = args.pop("project_id")
        identity: auth.Identity | None = http.environ.get(auth.ENV_IDENTITY)
        if identity is None:
            raise exceptions.Forbidden(reason="the request was not authenticated")
        if identity.user_id is not None:  # noauth takes it from X-User-Id; it is stored and logged
            schemas.check_parameter("X-User-Id", identity.user_id)
        global_id = http.environ.get(ENV_GLOBAL_REQUEST_ID)
        ctx = get_context(project_id, user_id=identity.user_id, roles=list(identity.roles),
                          request_id=request_id, global_request_id=global_id)
        if global_id:
            LOG.debug("request %s: %s %s, global request id %s", request_id, http.method, http.path, global_id)
        ctx.is_admin = rules.is_admin(self._enforcer, ctx)
        ctx.update_store()  # the request's lines from here on carry its user and project (RootApp restores)
        if identity.project_id is not None and identity.project_id != project_id and not ctx.is_admin:
            raise exceptions.Forbidden(reason=f"the token is not scoped to project {project_id}")
        if identity.project_id == project_id:  # keystone: a token keystonemiddleware confirmed for the URL's
            # project, which a block backend may act with as the user there (Cinder's act_as_user; an admin's
            # token of another project is not passed on); never logged, stored or put on a job board
            # (RequestContext.to_dict drops it)
            ctx.auth_token = http.environ.get("HTTP_X_AUTH_TOKEN") or None
        # The route's rule on the URL's project before the handler reads anything: a caller the policy refuses
        # gets 403, never a 400 about a body it may not send (the handler checks it again on the object).
        rules.authorize(self._enforcer, ctx, route.rule.action)
        req = ApiRequest(http=http, ctx=ctx, project_id=project_id, conf=self._conf, db=self._db,
                         protection=self._protection, enforcer=self._enforcer, providers=self._providers)
        result = route.handler(req, **args)
        if isinstance(result, webob.Response):  # the volume data route's bytes, ranges included
            return result
        if isinstance(result, Download):
            return download_response(result)
        status, body = result
        return json_response(status, body)


def request_path(environ: dict[str, Any]) -> str:
    """The request's path as text.  Bytes that are not UTF-8 become lone surrogates (``surrogateescape``)
    rather than an error: routing goes on, and the path parameter holding them is refused by its rule
    with a 400 that names it."""
    raw: str = environ.get("PATH_INFO", "")
    return raw.encode("latin-1", "replace").decode("utf-8", "surrogateescape")


def check_query(query_string: str) -> None:
    """400 naming the first query parameter whose name or value is not UTF-8 once percent-decoded."""
    for name, value in urllib.parse.parse_qsl(query_string, keep_blank_values=True, encoding="utf-8",
                                              errors="surrogateescape"):
        if _SURROGATE.search(name):
            raise errors.BadRequest(reason="query: a parameter name is not UTF-8 text")
        if _SURROGATE.search(value):
            raise errors.BadRequest(reason=f"{name}: the value is not UTF-8 text")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _same_shape(mapper: routes.Mapper, path: str, route: Route) -> bool:
    found = mapper.routematch(url=path)
    return bool(found) and ROUTES[int(found[0]["route_index"])].path == route.path


class RootApp:
    """Outermost layer: request id on every response, versions, OpenAPI, early 413."""

    def __init__(self, conf: cfg.ConfigOpts, v1: WSGIApp) -> None:
        self._conf = conf
        self._v1 = v1
        self._openapi: bytes | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = environ.get(ENV_OSLO_REQUEST_ID) or new_request_id()
        environ[ENV_REQUEST_ID] = request_id
        # The request's context is the thread's current one while it is served (every line logged meanwhile
        # carries its request id); V1App replaces it with the authenticated one (user, project).
        with sr_context.scope():
            sr_context.RequestContext(request_id=request_id, global_request_id=environ.get(ENV_GLOBAL_REQUEST_ID),
                                      overwrite=True)  # current from here
            started = time.monotonic()
            answered: list[str] = []

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                headers = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.lower()]
                headers.append((REQUEST_ID_HEADER, request_id))
                answered.append(status)
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            try:
                return self._answer(environ, start, request_id)
            finally:
                access_log(environ, answered[-1] if answered else "-", time.monotonic() - started)

    def _answer(self, environ: dict[str, Any], start: Callable[..., Any], request_id: str) -> Iterable[bytes]:
        try:
            resp = self._route(environ, request_id)
            if resp is None:
                return self._v1(environ, start)
        except Exception as err:  # noqa: BLE001 - JSON answer; unexpected errors logged with the id
            resp = errors.response_for(err, request_id)
        return resp(environ, start)  # type: ignore[no-any-return]

    def _route(self, environ: dict[str, Any], request_id: str) -> webob.Response | None:
        http = webob.Request(environ)
        path = (request_path(environ) or "/").rstrip("/") or "/"
        max_size = int(self._conf.api.max_request_body_size)
        if http.content_length is not None and http.content_length > max_size:
            raise errors.RequestTooLarge(limit=max_size)
        if path == "/":
            if http.method not in ("GET", "HEAD"):
                raise errors.MethodNotAllowed(method=http.method, path="/", allow=["GET"])
            return json_response(200, versions(http.application_url))
        if path == "/v1":
            if http.method not in ("GET", "HEAD"):
                raise errors.MethodNotAllowed(method=http.method, path=request_path(environ), allow=["GET"])
            return json_response(200, {"version": v1_version(http.application_url)})
        if path == "/v1/openapi.json":
            if http.method not in ("GET", "HEAD"):
                raise errors.MethodNotAllowed(method=http.method, path=path, allow=["GET"])
            if self._openapi is None:
                self._openapi = json.dumps(openapi.build(ROUTES, str(self._conf.auth_strategy))).encode("utf-8")
            resp = json_response(200, None)
            resp.content_type = "application/json"
            resp.body = self._openapi
            return resp
        if path == "/v1" or path.startswith("/v1/"):
            return None
        raise exceptions.NotFound(kind="Resource", id=request_path(environ))


def v1_version(base_url: str) -> dict[str, Any]:
    """The v1 entry of the version document.  ``version``/``min_version`` are empty: v1 has no
    microversions (OpenStack's convention).  ``base_url``: scheme, host and script name of the request, as
    the proxy headers made them (``http_proxy_to_wsgi``)."""
    return {
        "id": "v1.0",
        "status": "CURRENT",
        "version": "",
        "min_version": "",
        "links": [{"rel": "self", "href": f"{base_url}/v1/"}],
    }


def versions(base_url: str) -> dict[str, Any]:
    return {"versions": [v1_version(base_url)]}


def access_log(environ: dict[str, Any], status: str, seconds: float) -> None:
    """One INFO line per request, under its context: method, path, status and time (never the query, which
    may hold names the caller chose)."""
    LOG.info('"%s %s" status: %s time: %.3f', environ.get("REQUEST_METHOD", "-"),
             request_path(environ).encode("unicode_escape").decode("ascii"), status.split(" ", 1)[0], seconds)


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def make_app(conf: cfg.ConfigOpts, db: Any, protection: ProtectionAPI,
             admin_token: str | None = None) -> WSGIApp:
    """The whole API as one WSGI callable (any WSGI server can host it).

    ``admin_token``: noauth's administrator token as :mod:`strongroom.admin_token` resolved it (default: the
    configured one)."""
    from strongroom.api import pipeline

    return pipeline.load(conf, db, protection, admin_token, policy.get_enforcer(conf))

