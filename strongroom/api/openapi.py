"""A generated OpenAPI 3 document of the v1 API (served at ``GET /v1/openapi.json``).

Built from the route table (:mod:`strongroom.api.routes`), the request schemas (:mod:`strongroom.api.schemas`)
and the response schemas (:mod:`strongroom.api.response_schemas`), so it cannot drift from what the server
accepts and answers; ``tests/unit/api/test_api_schemathesis.py`` holds the server to it.

The document depends on the authentication the server runs (:func:`build`'s ``auth_strategy``): under
``keystone`` every operation requires ``X-Auth-Token`` and may answer 401; under ``noauth`` the token is an
optional header (the admin token makes the caller an administrator) and nothing answers 401.

Every status an operation can answer is declared: its success, the API's own refusals (400, 403, 404 where
a path or body names an object, 409 for writes, 415 for a body that is not JSON), those of the HTTP server
before the application runs (408 late request, 413 body too large, 431 headers too large) and 503.  A 500 is
never declared: it is a defect, and the schemathesis run fails on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from strongroom.api import errors, response_schemas, schemas
from strongroom.api.routes import Route
from strongroom.validation import SURROGATES, Rule, string

_PARAM = re.compile(r"\{([a-z_]+)\}")

def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or the empty string: the server reads an empty query value as an absent one."""
    return {"anyOf": [{"type": "string", "maxLength": 0}, schema]}


#: What the query parameters that are not filters do, and their schema (None: the string of their rule).
_QUERY: dict[str, tuple[dict[str, Any] | None, str]] = {
    "marker": (None, "id of the last item of the previous page"),
    "limit": (_or_empty({"type": "integer", "minimum": 0}),
              "page size, capped by osapi_max_limit (also when absent or empty); 0 answers an empty page; a "
              "negative value is a 400"),
    "sort": (None, "key[:dir][,key[:dir]...]: the order of the list (dir asc or desc, default desc; each key at "
                   "most once)"),
    "sort_key": (None, "a sort key (Karbor's spelling; not with sort)"),
    "sort_dir": (_or_empty({"type": "string", "enum": ["asc", "desc"]}), "asc or desc (with sort_key)"),
    "all_tenants": ({"type": "string"}, "1, true, yes or on: every project's items (administrators only)"),
    "start_date": (_or_empty({"type": "string", "format": "date"}), "YYYY-MM-DD: created on or after"),
    "end_date": (_or_empty({"type": "string", "format": "date"}), "YYYY-MM-DD: created on or before"),
    "parameters": ({"type": "string"}, "a JSON object of the protectable plugin's parameters"),
    "path": ({"type": "string", "maxLength": 4096}, "an absolute path inside the volume's filesystem (archive: "
                                                    "repeatable)"),
    "partition": (_or_empty({"type": "integer", "minimum": 0}),
                  "the partition's number, as the kernel numbers it (default: the whole volume without a table, "
                  "else the largest readable partition)"),
    "to": (None, "the id of the checkpoint to compare with"),
}

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_REQUEST_ID = {"X-Openstack-Request-Id": {
    "description": "the request's id, as the server's log names it (absent from answers the HTTP server gives "
                   "before the application runs: 408, 431)",
    "schema": {"type": "string"}}}


def _operation_id(route: Route) -> str:
    return f"{route.handler.__module__.rsplit('.', 1)[-1]}_{route.handler.__name__}"


def _query_parameter(route: Route, name: str) -> dict[str, Any]:
    schema, description = _QUERY.get(name, (None, "filter: only items whose field equals this value"))
    if name == "sort_key":
        schema = _or_empty({"type": "string", "enum": list(route.sort_keys)})
    elif name == "sort":
        one = f"({'|'.join(re.escape(key) for key in route.sort_keys)})(:(asc|desc))?"
        schema = _or_empty({"type": "string", "pattern": f"^{one}(,{one})*$"})
    elif schema is None:
        schema = _or_empty(_strip(string(schemas.PARAMETERS.get(name, Rule.NAME))))
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": _strip(string(schemas.PARAMETERS.get(name, Rule.NAME)))}


def _auth_parameters(auth_strategy: str) -> list[dict[str, Any]]:
    if auth_strategy == "keystone":
        return []  # the token is the security requirement; the identity comes from Keystone
    return [
        {"name": "X-Auth-Token", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "noauth: optional; the admin token (in the state directory) makes the caller an "
                        "administrator, any other value or none a member of the URL's project"},
        {"name": "X-User-Id", "in": "header", "required": False, "schema": _strip(string(Rule.NAME, min_length=0)),
         "description": "noauth: the caller's user id (absent or empty: noauth)"},
    ]


_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_RANGE_HEADERS = {"Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}}}


def _binary_responses() -> dict[str, Any]:
    """A volume data route's successes: the whole volume (200), one range of it (206), none (416)."""
    return {
        "200": {"description": "OK: the whole volume (no Range header)", "headers": {**_REQUEST_ID, **_RANGE_HEADERS},
                "content": _BYTES},
        "206": {"description": "Partial Content: the range asked, possibly short (Content-Range says which bytes "
                               "of how many)",
                "headers": {**_REQUEST_ID, **_RANGE_HEADERS, "Content-Range": {
                    "schema": {"type": "string", "pattern": r"^bytes [0-9]+-[0-9]+/[0-9]+$"}}},
                "content": _BYTES},
        "416": {"description": "Range Not Satisfiable: the range starts at or past the end (Content-Range: "
                               "bytes */SIZE)",
                "headers": {**_REQUEST_ID, "Content-Range": {"schema": {"type": "string",
                                                                       "pattern": r"^bytes \*/[0-9]+$"}}}},
    }


def _success(route: Route) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": {200: "OK", 202: "Accepted", 204: "No Content"}[route.status],
                              "headers": _REQUEST_ID}
    if route.produces is not None:
        answer["content"] = {route.produces: {"schema": {"type": "string", "format": "binary"}}}
        answer["headers"] = {**_REQUEST_ID, "Content-Disposition": {
            "description": "attachment; filename*=UTF-8''<name>", "schema": {"type": "string"}}}
    if route.response_key is not None:
        item = {"$ref": f"#/components/schemas/{route.response_schema}"}
        properties: dict[str, Any] = {route.response_key: {"type": "array", "items": item} if route.listing
                                      else item}
        if route.paged:
            properties[f"{route.response_key}_links"] = {
                "type": "array", "description": "present when a full page was answered: the next page",
                "items": {"type": "object", "required": ["rel", "href"], "additionalProperties": False,
                          "properties": {"rel": {"type": "string", "enum": ["next"]}, "href": {"type": "string"}}}}
        answer["content"] = {"application/json": {"schema": {
            "type": "object", "required": [route.response_key], "properties": properties,
            "additionalProperties": False}}}
    return answer


def statuses(route: Route, auth_strategy: str) -> list[int]:
    """Every status but the success that ``route`` can answer under ``auth_strategy``."""
    codes = [400, 403, 408, 413, 431, 503]
    if auth_strategy == "keystone":
        codes.append(401)
    if len(_PARAM.findall(route.full_path)) > 1 or route.request_schema is not None or route.naming:
        codes.append(404)  # the path names an object, or the body or the query does (a plan, a provider)
    if route.method != "GET" or route.binary:  # a volume's data is read of an available checkpoint only
        codes.append(409)
    if route.request_schema is not None:
        codes.append(415)
    return sorted(codes)


def build(routes: Iterable[Route], auth_strategy: str = "noauth") -> dict[str, Any]:
    """The document of ``routes`` as a server with ``auth_strategy`` (``noauth`` or ``keystone``) answers."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route),
            "parameters": [_path_parameter(n) for n in _PARAM.findall(route.full_path)]
            + [_query_parameter(route, n) for n in route.query] + _auth_parameters(auth_strategy),
            "responses": _binary_responses() if route.binary else {str(route.status): _success(route)},
        }
        if route.binary:
            op["parameters"].append({
                "name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "one byte range: bytes=START-END, bytes=START- or bytes=-SUFFIX"})
        if route.request_schema:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{route.request_schema}"}}}}
        for code in statuses(route, auth_strategy):
            op["responses"][str(code)] = {"description": errors.TITLES[code], "headers": _REQUEST_ID,
                                          "content": {"application/json": {"schema": _ERROR_REF}}}
        paths.setdefault(route.full_path, {})[route.method.lower()] = op
    components: dict[str, Any] = {"schemas": {
        "Error": _strip(response_schemas.ERROR),
        **{name: _strip(schema) for name, schema in schemas.ALL.items()},
        **{name: _strip(schema) for name, schema in response_schemas.ALL.items()},
    }}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "Strongroom API", "version": "1.0",
                 "description": f"Data protection service; Karbor v1 compatible. Authentication: {auth_strategy}."},
        "paths": paths,
        "components": components,
    }
    if auth_strategy == "keystone":
        components["securitySchemes"] = {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token",
                                                   "description": "a Keystone token scoped to the URL's project"}}
        doc["security"] = [{"token": []}]
    return doc


def _strip(schema: Any) -> Any:
    """JSON Schema 2020-12 -> OpenAPI 3.0 schema objects (``type`` lists become ``nullable``).

    Patterns lose their lone-surrogate range: the server still refuses a ``\\uD800`` escape (the ``format``
    says so), but other tools' regex engines cannot compile that range and would drop the whole pattern.
    """
    if isinstance(schema, dict):
        out = {k: _strip(v) for k, v in schema.items()}
        if isinstance(out.get("pattern"), str):
            out["pattern"] = out["pattern"].replace(SURROGATES, "")
        kind = out.get("type")
        if isinstance(kind, list):
            others = [k for k in kind if k != "null"]
            if len(others) == 1:
                out["type"] = others[0]
                if "null" in kind:
                    out["nullable"] = True
            else:
                out.pop("type")
                out["anyOf"] = [{"type": k} for k in others]
                if "null" in kind:
                    out["nullable"] = True
        return out
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema
