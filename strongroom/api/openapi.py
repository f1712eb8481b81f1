"""A generated OpenAPI 3 document of the v1 API (served at ``GET /v1/openapi.json``).

Built from the route table (:mod:`strongroom.api.routes`) and the request schemas, so it cannot drift from
what the server accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from strongroom.api import errors, schemas
from strongroom.api.routes import Route

_PARAM = re.compile(r"\{([a-z_]+)\}")

_LIST_PARAMS = [
    {"name": "marker", "in": "query", "schema": {"type": "string"},
     "description": "id of the last item of the previous page"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0},
     "description": "page size (capped by osapi_max_limit)"},
    {"name": "sort", "in": "query", "schema": {"type": "string"}, "description": "key:dir[,key:dir...]"},
    {"name": "all_tenants", "in": "query", "schema": {"type": "string"}, "description": "1: every project "
                                                                                        "(admin only)"},
]

_ERROR = {
    "type": "object",
    "description": "{\"<title in lowerCamelCase>\": {\"code\": ..., \"title\": ..., \"message\": ...}}",
    "additionalProperties": {
        "type": "object",
        "properties": {"code": {"type": "integer"}, "title": {"type": "string"},
                       "message": {"type": "string"}},
        "required": ["code", "message"],
    },
}


def _operation_id(route: Route) -> str:
    return f"{route.handler.__module__.rsplit('.', 1)[-1]}_{route.handler.__name__}"


def build(routes: Iterable[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        full = route.full_path
        names = _PARAM.findall(full)
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route),
            "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                           for n in names],
            "responses": {},
        }
        if route.query is not None:
            op["parameters"] += [{"name": n, "in": "query", "schema": {"type": "string"}} for n in route.query]
        elif route.method == "GET" and route.response_key and route.path.endswith(
                ("s", "instances", "operation_logs")) and not _PARAM.search(route.path.rsplit("/", 1)[-1]):
            op["parameters"] += _LIST_PARAMS
        if route.request_schema:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{route.request_schema}"}}}}
        ok: dict[str, Any] = {"description": "OK" if route.status == 200 else "Accepted"}
        if route.response_key:
            ok["content"] = {"application/json": {"schema": {
                "type": "object", "required": [route.response_key],
                "properties": {route.response_key: {}}}}}
        op["responses"][str(route.status)] = ok
        for code in (400, 401, 403, 404, 409, 413, 500, 503):
            op["responses"][str(code)] = {"description": errors.TITLES[code], "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(full, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "Strongroom API", "version": "1.0",
                 "description": "Data protection service; Karbor v1 compatible."},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, **{name: _strip(schema) for name, schema in schemas.ALL.items()}},
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
        },
        "security": [{"token": []}],
    }


def _strip(schema: Any) -> Any:
    """JSON Schema 2020-12 -> OpenAPI 3.0 schema objects (``type`` lists become ``nullable``)."""
    if isinstance(schema, dict):
        out = {k: _strip(v) for k, v in schema.items()}
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
        return out
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema
