"""What every v1 controller shares: the request object, list parameters, links, date filters."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

import webob
from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from strongroom import exceptions
from strongroom.api import rules, schemas
from strongroom.api.errors import BadRequest, RequestTooLarge, UnsupportedMediaType
from strongroom.context import RequestContext
from strongroom.protection.rpcapi import ProtectionAPI
from strongroom.validation import MAX_DEPTH

# What a handler returns: (HTTP status, JSON body or None).
Result = tuple[int, dict[str, Any] | None]
#: What a handler returns: a status and JSON body, or a response of its own (the volume data route's bytes).
Answer: TypeAlias = Result | webob.Response


@dataclasses.dataclass
class Download:
    """What a handler streaming bytes returns instead of a :data:`Result` (200, ``body`` iterated as sent)."""

    content_type: str
    body: Iterator[bytes]
    length: int | None = None
    filename: str | None = None

_TRUE = {"1", "true", "yes", "on"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class HasId(Protocol):
    id: Any


T = TypeVar("T")


class KnownProviders:
    """The provider ids the protection service confirmed, each remembered for ``ttl`` seconds.

    Listing a provider's checkpoints first asks whether the provider exists (an unknown one answers 404,
    not an empty list); that question went over RPC on every request.  Only confirmed ids are kept, so the
    set is as small as the providers are few, and an id never confirmed is always asked.  ``clock``:
    monotonic seconds (injectable for tests)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def check(self, protection: ProtectionAPI, ctx: RequestContext, provider_id: str) -> None:
        """Return when ``provider_id`` is known; NotFound (from the protection service) when it is not."""
        now = self._clock()
        with self._lock:
            until = self._until.get(provider_id)
        if until is not None and now < until:
            return
        protection.show_provider(ctx, provider_id)
        if self._ttl > 0:
            with self._lock:
                self._until[provider_id] = now + self._ttl


@dataclasses.dataclass
class ApiRequest:
    """One v1 request, already authenticated, with everything a controller needs."""

    http: webob.Request
    ctx: RequestContext
    project_id: str
    conf: cfg.ConfigOpts
    db: Any  # strongroom.db.api.Database (typed loosely: the API does not import the DB layer's models)
    protection: ProtectionAPI
    enforcer: oslo_policy.Enforcer
    providers: KnownProviders | None = None
    _body: Any = dataclasses.field(default=None, repr=False)
    _body_read: bool = dataclasses.field(default=False, repr=False)

    @property
    def params(self) -> Mapping[str, str]:
        return self.http.GET  # type: ignore[no-any-return]

    def check_provider(self, provider_id: str) -> None:
        """NotFound naming the provider unless the protection service knows it (:class:`KnownProviders`)."""
        if self.providers is None:
            self.protection.show_provider(self.ctx, provider_id)
        else:
            self.providers.check(self.protection, self.ctx, provider_id)

    def authorize(self, action: str, target: dict[str, Any] | None = None) -> None:
        rules.authorize(self.enforcer, self.ctx, action, target)

    def allowed(self, action: str, target: dict[str, Any] | None = None) -> bool:
        return rules.allowed(self.enforcer, self.ctx, action, target)

    def body(self) -> Any:
        """The parsed JSON body; 400 when absent or not JSON, 413 when too large."""
        if not self._body_read:
            self._body = parse_json_body(self.http, int(self.conf.api.max_request_body_size))
            self._body_read = True
        return self._body

    def validated_body(self, schema: dict[str, Any]) -> Any:
        """The body if it obeys ``schema`` (400 naming the field), then :func:`schemas.check_text` of what
        the schema leaves free (400 for NUL, lone surrogates or absurd nesting under ``extra_info``...)."""
        body = self.body()
        schemas.validate(schema, body)
        schemas.check_text(body)
        return body

    # -- scopes -----------------------------------------------------------

    def list_scope(self) -> str | None:
        """The project whose rows a list returns; None (every project) with ``all_tenants=1``, admin only."""
        if str(self.params.get("all_tenants", "")).lower() in _TRUE:
            self.authorize("all_tenants")
            return None
        return self.project_id

    def owner_scope(self) -> str | None:
        """Project to look an object up in: administrators reach every project's objects by id."""
        return None if self.ctx.is_admin else self.project_id


def read_body(http: webob.Request, max_size: int) -> bytes:
    length = http.content_length
    if length is not None and length > max_size:
        raise RequestTooLarge(limit=max_size)
    stream = http.environ.get("wsgi.input")
    if stream is None:
        return b""
    if length is None and http.environ.get("HTTP_TRANSFER_ENCODING", "").lower() != "chunked":
        return b""
    data: bytes = stream.read(max_size + 1) if length is None else stream.read(length)
    if len(data) > max_size:
        raise RequestTooLarge(limit=max_size)
    return data


#: The media types a request body may be declared as (a body without Content-Type is read as JSON).
JSON_TYPES = ("application/json",)


def parse_json_body(http: webob.Request, max_size: int) -> Any:
    """The body as JSON: 415 when it is declared as something else, 400 when absent, not UTF-8, not JSON
    or nested so deep that the parser gives up."""
    declared = (http.content_type or "").lower()
    if declared and declared not in JSON_TYPES and not declared.endswith("+json"):
        raise UnsupportedMediaType(reason=f"body: the request body must be application/json, not {declared}")
    raw = read_body(http, max_size)
    if not raw.strip():
        raise BadRequest(reason="body: a JSON request body is required")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BadRequest(reason="body: the request body is not UTF-8 text") from err
    except json.JSONDecodeError as err:
        raise BadRequest(reason=f"body: malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") \
            from err
    except RecursionError:
        raise BadRequest(reason=f"body: nested more than {MAX_DEPTH} levels deep") from None


# -- list parameters --------------------------------------------------------


def limit_param(req: ApiRequest) -> int:
    """``limit`` capped by ``osapi_max_limit``; 400 naming ``limit`` when it is not a non-negative integer."""
    max_limit = int(req.conf.osapi_max_limit)
    raw = req.params.get("limit")
    if raw is None or raw == "":
        return max_limit
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(reason=f"limit: {raw!r} is not an integer") from None
    if value < 0:
        raise BadRequest(reason=f"limit: must be a non-negative integer, got {value}")
    return min(value, max_limit)


def marker_param(req: ApiRequest) -> str | None:
    """The id after which a page starts; 400 naming ``marker`` when it could be no item's id."""
    return query_param(req, "marker")


def sort_param(req: ApiRequest, allowed: Sequence[str],
               default: Sequence[tuple[str, str]] = (("created_at", "desc"),)) -> list[tuple[str, str]]:
    """``sort=key:dir,key2`` or ``sort_key``/``sort_dir`` (not both); keys limited to ``allowed``."""
    pairs: list[tuple[str, str]] = []
    sort = req.params.get("sort")
    if sort and (req.params.get("sort_key") or req.params.get("sort_dir")):
        raise BadRequest(reason="sort_key: give either sort or sort_key and sort_dir, not both")
    if sort:
        for item in sort.split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key.strip(), (direction or "desc").strip().lower()))
    elif req.params.get("sort_key"):
        keys = [k.strip() for k in req.params.getall("sort_key")]  # type: ignore[attr-defined]
        dirs = [d.strip().lower() for d in req.params.getall("sort_dir")]  # type: ignore[attr-defined]
        for i, key in enumerate(keys):
            pairs.append((key, dirs[i] if i < len(dirs) else (dirs[-1] if dirs else "desc")))
    elif req.params.get("sort_dir"):
        direction = str(req.params.get("sort_dir")).strip().lower()
        pairs = [(key, direction) for key, _ in default]
    else:
        return list(default)
    seen: set[str] = set()
    for key, direction in pairs:
        if key in seen:
            raise BadRequest(reason=f"sort: sort key {key!r} is given twice")
        seen.add(key)
        if key not in allowed:
            raise BadRequest(reason=f"sort: unknown sort key {key!r} (allowed: {', '.join(allowed)})")
        if direction not in ("asc", "desc"):
            raise BadRequest(reason=f"sort: direction of {key!r} must be 'asc' or 'desc', got {direction!r}")
    return pairs


def filter_params(req: ApiRequest, allowed: Sequence[str]) -> dict[str, Any]:
    """The query parameters named in ``allowed`` (others, e.g. ``limit``, are not filters); 400 naming a
    filter whose value breaks its rule (:data:`strongroom.api.schemas.PARAMETERS`)."""
    return {key: schemas.check_parameter(key, req.params[key])
            for key in allowed if req.params.get(key) not in (None, "")}


def query_param(req: ApiRequest, name: str) -> str | None:
    """One query parameter checked like a filter, or None when absent or empty."""
    raw = req.params.get(name)
    return schemas.check_parameter(name, raw) if raw else None


def date_param(req: ApiRequest, name: str) -> _dt.date | None:
    raw = req.params.get(name)
    if raw in (None, ""):
        return None
    assert raw is not None
    try:
        if not _DATE.match(raw):
            raise ValueError(raw)
        return _dt.date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(reason=f"{name}: {raw!r} is not a date in the format YYYY-MM-DD") from None


def json_object_param(req: ApiRequest, name: str) -> dict[str, Any]:
    raw = req.params.get(name)
    if raw in (None, ""):
        return {}
    assert raw is not None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise BadRequest(reason=f"{name}: must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest(reason=f"{name}: must be a JSON object")
    schemas.check_text(value, (name,))
    return value


def links(req: ApiRequest, name: str, items: Sequence[dict[str, Any]], limit: int) -> dict[str, Any]:
    """``{"<name>_links": [{"rel": "next", "href": ...}]}`` when a full page was returned, else ``{}``."""
    if limit <= 0 or len(items) < limit or not items:
        return {}
    query = [(k, v) for k, v in req.params.items() if k not in ("marker", "limit")]
    query += [("limit", str(limit)), ("marker", str(items[-1]["id"]))]
    href = f"{req.http.path_url}?{urllib.parse.urlencode(query)}"
    return {f"{name}_links": [{"rel": "next", "href": href}]}


def paginate_in_memory(items: list[T], key: Callable[[T], str], marker: str | None, limit: int,
                       kind: str) -> list[T]:
    """Marker/limit over a list already in order (providers, protectables)."""
    start = 0
    if marker is not None:
        ids = [key(item) for item in items]
        if marker not in ids:
            raise BadRequest(reason=f"marker: {kind} {marker} could not be found")
        start = ids.index(marker) + 1
    return items[start:start + limit]


def list_result(req: ApiRequest, name: str, rows: list[dict[str, Any]], limit: int) -> Result:
    return 200, {name: rows, **links(req, name, rows, limit)}


def db_list(req: ApiRequest, name: str, lister: Callable[..., Sequence[Any]], view: Callable[[Any], dict[str, Any]],
            *, project: str | None, filters: Mapping[str, Any], sort_keys: Sequence[str]) -> Result:
    """One page of a DB listing: ``limit``, ``sort`` and ``marker`` from the query, ``<name>_links`` when more remain.

    ``lister(project, filters=, marker=, limit=, sort=)`` is one of ``Database.list_*``.
    """
    limit = limit_param(req)
    sort = sort_param(req, sort_keys)
    if limit == 0:
        return list_result(req, name, [], 0)
    rows = lister(project, filters=filters, marker=marker_param(req), limit=limit, sort=sort)
    return list_result(req, name, [view(r) for r in rows], limit)


def not_found_as_bad_request(err: exceptions.NotFound, field: str, value: str) -> BadRequest:
    return BadRequest(reason=f"{field}: {value} not found")
