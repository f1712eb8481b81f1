"""The web dashboard: static pages served by the API process at ``/dashboard/`` (doc/dashboard.md).

The pages are plain HTML, CSS and JavaScript modules shipped in ``static/`` (package data); nothing is built
or fetched at run time.  The browser asks for a token (or uses the embedded noauth default), keeps it in
``sessionStorage`` and calls ``/v1`` with ``X-Auth-Token`` as any client does: the pages themselves hold no
data and no credential, so they are served before the authentication middleware.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Where the pages are, below the API's root.
DEFAULT_PATH = "/dashboard"

#: Sent with every page: scripts, styles and API calls from this origin only, no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def static_dir() -> str:
    """The shipped assets' directory (inside the installed package)."""
    from importlib import resources

    return str(resources.files(__name__).joinpath("static"))


class Dashboard:
    """``<path>/...`` (GET or HEAD) answers the shipped file; ``<path>`` redirects to ``<path>/``; any other
    path goes on down the pipeline."""

    def __init__(self, app: WSGIApp, path: str = DEFAULT_PATH, directory: str | None = None) -> None:
        from webob import static

        self._app = app
        self._prefix = "/" + path.strip("/")
        self._files = static.DirectoryApp(directory or static_dir(), index_page="index.html")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        import webob
        from webob import exc

        path = environ.get("PATH_INFO", "")
        if path != self._prefix and not path.startswith(self._prefix + "/"):
            return self._app(environ, start_response)
        request = webob.Request(environ)
        if request.method not in ("GET", "HEAD"):
            response: webob.Response = exc.HTTPMethodNotAllowed(
                f"{self._prefix}/ answers GET and HEAD, not {request.method}", headers={"Allow": "GET, HEAD"})
        elif path == self._prefix:
            response = exc.HTTPMovedPermanently(location=request.script_name + self._prefix + "/")
        else:
            inner = request.copy_get() if request.method == "GET" else request.copy()
            inner.script_name = request.script_name + self._prefix
            inner.path_info = path[len(self._prefix):]
            response = inner.get_response(self._files)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response(environ, start_response)  # type: ignore[no-any-return]


def filter_factory(global_conf: Mapping[str, Any], path: str = DEFAULT_PATH, **local_conf: str) -> \
        Callable[[WSGIApp], WSGIApp]:
    """The PasteDeploy filter of ``etc/strongroom/api-paste.ini`` (``[filter:dashboard]``)."""
    return lambda app: Dashboard(app, path)
