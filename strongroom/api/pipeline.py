"""The API's WSGI pipeline, composed by PasteDeploy from ``[api] api_paste_config``.

The shipped file (``etc/strongroom/api-paste.ini``) is, outermost first::

    request_id           oslo.middleware RequestId: the request id; an incoming req-<uuid> is the global id
    metrics              GET /metrics: Prometheus metrics, to [metrics] allowed_source_ranges (strongroom.metrics)
    healthcheck          GET /healthcheck (oslo.middleware Healthcheck; our database and RPC checks)
    http_proxy_to_wsgi   X-Forwarded-Proto/-Host/-Prefix -> the WSGI environ, so links name the proxy
    cors                 oslo.middleware CORS, from [cors]
    sizelimit            413 naming [api] max_request_body_size
    dashboard            GET /dashboard/: the web dashboard's static pages (strongroom.dashboard)
    versions             RootApp: /, /v1/, /v1/openapi.json without authentication
    auth                 noauth, or keystonemiddleware auth_token, as auth_strategy says
    strongroom           V1App: the routes

The factories need objects that no ini file can hold (the options, the metadata store, the RPC client):
:func:`load` puts them in a registry under a one-use key and hands that key to PasteDeploy as the global
configuration; each factory takes them from there.  The oslo.middleware middlewares get our ``ConfigOpts``
(never the global ``cfg.CONF``); a key of a ``[filter:...]`` section sets that option's default.
"""

from __future__ import annotations

import configparser
import dataclasses
import functools
import inspect
import io
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import webob
from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from strongroom import exceptions, paths
from strongroom.api import auth, errors, rules
from strongroom.context import get_context

LOG = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Filter = Callable[[WSGIApp], WSGIApp]

#: The global-configuration key naming a build's :class:`Resources`.
RESOURCES_KEY = "strongroom_resources"
#: The section :func:`load` loads.
PIPELINE_NAME = "strongroom-api"
#: The shipped pipeline, relative to the source tree or to ``<sys.prefix>/share/strongroom``.
SHIPPED_PASTE_FILE = os.path.join("etc", "strongroom", "api-paste.ini")


@dataclasses.dataclass(frozen=True)
class Resources:
    """What the factories of one build share."""

    conf: cfg.ConfigOpts
    db: Any
    protection: Any
    admin_token: str
    enforcer: oslo_policy.Enforcer


_BUILDS: dict[str, Resources] = {}
_BUILDS_LOCK = threading.Lock()


def paste_config_path(conf: cfg.ConfigOpts) -> str:
    """``[api] api_paste_config``, or the shipped file (:mod:`strongroom.paths`)."""
    configured = conf.api.api_paste_config
    if configured:
        return os.path.abspath(str(configured))
    return paths.data_path(SHIPPED_PASTE_FILE)


def load(conf: cfg.ConfigOpts, db: Any, protection: Any, admin_token: str | None,
         enforcer: oslo_policy.Enforcer) -> WSGIApp:
    """The pipeline ``strongroom-api`` of the configured paste file, built for these objects."""
    from paste import deploy

    path = paste_config_path(conf)
    if not os.path.isfile(path):
        raise exceptions.ConfigError(reason=f"[api] api_paste_config: {path} does not exist")
    key = uuid.uuid4().hex
    token = admin_token if admin_token is not None else str(conf.admin_token or "")
    with _BUILDS_LOCK:
        _BUILDS[key] = Resources(conf=conf, db=db, protection=protection, admin_token=token, enforcer=enforcer)
    try:
        app: WSGIApp = deploy.loadapp(f"config:{path}", name=PIPELINE_NAME, global_conf={RESOURCES_KEY: key})
        return app
    except (LookupError, ImportError, configparser.Error) as err:
        raise exceptions.ConfigError(reason=f"[api] api_paste_config {path}: {err}") from err
    finally:
        with _BUILDS_LOCK:
            _BUILDS.pop(key, None)


def _resources(global_conf: Mapping[str, Any]) -> Resources:
    with _BUILDS_LOCK:
        found = _BUILDS.get(str(global_conf.get(RESOURCES_KEY, "")))
    if found is None:
        raise exceptions.ConfigError(
            reason="the strongroom API pipeline is built by strongroom.api.pipeline.load (make_app), which gives "
                   "its factories the service's options and metadata store")
    return found


def _set_defaults(conf: cfg.ConfigOpts, group: str, options: Mapping[str, Any]) -> None:
    """A paste section's keys as the defaults of ``[group]`` options (the service's file still wins)."""
    for name, value in options.items():
        try:
            conf.set_default(name, value, group=group)
        except cfg.NoSuchOptError as err:
            raise exceptions.ConfigError(reason=f"[filter:...] {name}: no option [{group}] {name}") from err


def _register(conf: cfg.ConfigOpts, listing: Iterable[tuple[str, Any]]) -> None:
    for group, opts in listing:
        conf.register_opts(list(opts), group=group)


# -- the factories the paste file names -------------------------------------------------------------------


def app_factory(global_conf: Mapping[str, Any], **local_conf: str) -> WSGIApp:
    from strongroom.api.app import V1App

    res = _resources(global_conf)
    return V1App(res.conf, res.db, res.protection, res.enforcer)


def versions_factory(global_conf: Mapping[str, Any], **local_conf: str) -> Filter:
    from strongroom.api.app import RootApp

    res = _resources(global_conf)
    return lambda app: RootApp(res.conf, app)


def auth_factory(global_conf: Mapping[str, Any], **local_conf: str) -> Filter:
    res = _resources(global_conf)
    return lambda app: auth.wrap(app, res.conf, res.admin_token)


def http_proxy_to_wsgi_factory(global_conf: Mapping[str, Any], **local_conf: str) -> Filter:
    from oslo_middleware import http_proxy_to_wsgi, opts

    res = _resources(global_conf)
    _register(res.conf, opts.list_opts_http_proxy_to_wsgi())
    _set_defaults(res.conf, "oslo_middleware", local_conf)
    middleware = signature_once(http_proxy_to_wsgi.HTTPProxyToWSGI)
    return lambda app: middleware(app, res.conf)


def cors_factory(global_conf: Mapping[str, Any], **local_conf: str) -> Filter:
    from oslo_middleware import cors, opts

    res = _resources(global_conf)
    _register(res.conf, opts.list_opts_cors())
    _set_defaults(res.conf, "cors", {**CORS_DEFAULTS, **local_conf})
    middleware = signature_once(cors.CORS)
    return lambda app: middleware(app, res.conf)


#: What a browser client of this API sends and reads (oslo.middleware's own defaults allow no header).
CORS_DEFAULTS = {
    "allow_headers": ["X-Auth-Token", "X-User-Id", "X-OpenStack-Request-ID", "Content-Type"],
    "expose_headers": ["X-OpenStack-Request-ID"],
}


def sizelimit_factory(global_conf: Mapping[str, Any], **local_conf: str) -> Filter:
    res = _resources(global_conf)
    _set_defaults(res.conf, "api", local_conf)
    return lambda app: SizeLimit(app, res.conf)


def healthcheck_factory(global_conf: Mapping[str, Any], path: str = "/healthcheck", **local_conf: str) -> Filter:
    from oslo_middleware import opts

    res = _resources(global_conf)
    _register(res.conf, opts.list_opts_healthcheck())
    _set_defaults(res.conf, "healthcheck", local_conf)
    return lambda app: HealthcheckFilter(app, res, path)


def metrics_factory(global_conf: Mapping[str, Any], path: str = "/metrics", **local_conf: str) -> Filter:
    res = _resources(global_conf)
    _set_defaults(res.conf, "metrics", local_conf)
    return lambda app: MetricsFilter(app, res, path)


@functools.cache
def signature_once(middleware: type) -> type:
    """``middleware`` (an oslo.middleware ``ConfigurableMiddleware``) with the same ``__call__`` but for one
    thing: whether ``process_response`` takes the request is found once, not by an
    ``inspect.getfullargspec`` on every request (25-75 us each, two such middlewares in the pipeline)."""
    from oslo_middleware import base

    takes_request = "request" in inspect.signature(middleware.process_response).parameters  # type: ignore[attr-defined]

    class SignatureOnce(middleware):  # type: ignore[misc, valid-type]
        @webob.dec.wsgify(RequestClass=base.NoContentTypeRequest)
        def __call__(self, req: webob.Request) -> webob.Response | None:
            response = self.process_request(req)
            if response:
                return response  # type: ignore[no-any-return]
            response = req.get_response(self.application)
            if takes_request:
                return self.process_response(response, request=req)  # type: ignore[no-any-return]
            return self.process_response(response)  # type: ignore[no-any-return]

    SignatureOnce.__name__ = SignatureOnce.__qualname__ = middleware.__name__
    return SignatureOnce


# -- our middlewares --------------------------------------------------------------------------------------


class SizeLimit:
    """The size limit, in place of oslo.middleware's sizelimit (whose 413 is an HTML page and whose limit is
    a second option): a declared body over ``[api] max_request_body_size``, the limit the threaded server
    also applies, is answered with the API's JSON 413 naming it before anything reads it; a chunked one is
    cut at the limit as it is read (:func:`strongroom.api.common.read_body` answers the same 413)."""

    def __init__(self, app: WSGIApp, conf: cfg.ConfigOpts) -> None:
        self._app = app
        self._conf = conf

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        limit = int(self._conf.api.max_request_body_size)
        length = environ.get("CONTENT_LENGTH")
        try:
            declared = int(length) if length else None
        except ValueError:
            declared = None  # the app's own parsing answers 400 for it
        if declared is not None and declared > limit:
            message = errors.RequestTooLarge(limit=limit).message
            return errors.error_response(413, message)(environ, start_response)  # type: ignore[no-any-return]
        return self._app(environ, start_response)


def _healthcheck_class() -> type:
    from oslo_middleware import healthcheck

    class _Healthcheck(healthcheck.Healthcheck):  # type: ignore[misc]
        """oslo.middleware's Healthcheck with a fixed view, whose backends get the build's resources."""

        def __init__(self, app: WSGIApp, conf: cfg.ConfigOpts, res: Resources, detailed: bool) -> None:
            import stevedore

            self._fixed_detailed = detailed
            super().__init__(app, conf)
            names = self._conf_get("backends")

            def missing(absent: Iterable[str]) -> None:
                raise exceptions.ConfigError(
                    reason=f"[healthcheck] backends: no {self.NAMESPACE} entry point named {', '.join(absent)}")

            self._backends = stevedore.NamedExtensionManager(
                self.NAMESPACE, names, name_order=True, invoke_on_load=True,
                invoke_args=(self.oslo_conf, {RESOURCES_KEY: res}), on_missing_entrypoints_callback=missing)

        def _conf_get(self, key: str, group: str = "healthcheck") -> Any:
            if key == "detailed":
                return self._fixed_detailed
            return super()._conf_get(key, group=group)

        def _make_text_response(self, results: list[Any], healthy: bool) -> tuple[str, str]:
            if healthy and not self._fixed_detailed:
                return "OK", "text/plain"
            if not self._fixed_detailed:  # the failing checks' reasons, one a line
                results = [r for r in results if not r.available]
            body, content_type = super()._make_text_response(results, healthy)
            return body, content_type

    return _Healthcheck


class HealthcheckFilter:
    """``path`` (GET or HEAD) answers the health of the API: "OK" (200) or the failing reasons (503); an
    administrator (the ``X-Auth-Token`` authenticated as the API does, then the ``context_is_admin`` rule)
    gets the detailed view, every check with its details.  Any other path goes on down the pipeline."""

    def __init__(self, app: WSGIApp, res: Resources, path: str) -> None:
        self._app = app
        self._path = path.rstrip("/") or "/"
        cls = _healthcheck_class()
        self._plain = cls(app, res.conf, res, detailed=False)
        self._detailed = cls(app, res.conf, res, detailed=True)
        self._probe = auth.wrap(_AdminProbe(res.enforcer), res.conf, res.admin_token)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "").rstrip("/") or "/"
        if path != self._path:
            return self._app(environ, start_response)
        view = self._detailed if self._is_admin(environ) else self._plain
        return view(environ, start_response)  # type: ignore[no-any-return]

    def _is_admin(self, environ: dict[str, Any]) -> bool:
        if not environ.get("HTTP_X_AUTH_TOKEN"):
            return False
        probe = {**environ, "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0", "REQUEST_METHOD": "GET"}
        try:
            answer = webob.Request(probe).get_response(self._probe)
        except Exception as err:  # noqa: BLE001 - an unconfirmed token gets the plain view, not an error
            LOG.warning("/healthcheck: the token could not be checked, answering the plain view: %s",
                        type(err).__name__)
            return False
        return answer.status_int == 204


class MetricsFilter:
    """``path`` (GET or HEAD) answers Prometheus' text exposition: this process's metrics (every worker's under
    gunicorn's multiprocess mode) and the catalogue's figures, read from the metadata store at each scrape.
    Only the addresses of ``[metrics] allowed_source_ranges`` may scrape (403 naming the option otherwise):
    the figures carry plan, project and provider ids, and no token is asked for (a scraper has none)."""

    def __init__(self, app: WSGIApp, res: Resources, path: str) -> None:
        from strongroom import metrics

        self._app = app
        self._path = path.rstrip("/") or "/"
        try:
            self._networks = metrics.parse_networks(res.conf.metrics.allowed_source_ranges)
        except ValueError as err:
            raise exceptions.ConfigError(reason=str(err)) from err
        self._catalogue = metrics.CatalogueCollector(res.db)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from strongroom import metrics

        path = environ.get("PATH_INFO", "").rstrip("/") or "/"
        if path != self._path:
            return self._app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            response = errors.error_response(405, f"{self._path} answers GET and HEAD, not {method}")
            return response(environ, start_response)  # type: ignore[no-any-return]
        remote = environ.get("REMOTE_ADDR")
        if not metrics.allowed(remote, self._networks):
            message = (f"{self._path} may not be scraped from {remote or 'an unknown address'}: it is not in "
                       f"[metrics] allowed_source_ranges")
            return errors.error_response(403, message)(environ, start_response)  # type: ignore[no-any-return]
        body, content_type = metrics.render([self._catalogue])
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [b""] if method == "HEAD" else [body]


class _AdminProbe:
    """Behind the authentication middleware: 204 when the caller it confirmed is an administrator."""

    def __init__(self, enforcer: oslo_policy.Enforcer) -> None:
        self._enforcer = enforcer

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        identity: auth.Identity | None = environ.get(auth.ENV_IDENTITY)
        admin = False
        if identity is not None:
            ctx = get_context(identity.project_id or "", user_id=identity.user_id, roles=list(identity.roles))
            admin = rules.is_admin(self._enforcer, ctx)
        start_response("204 No Content" if admin else "403 Forbidden", [("Content-Length", "0")])
        return [b""]
