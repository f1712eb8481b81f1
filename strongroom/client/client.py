"""A small Python client of the Strongroom (Karbor v1) REST API, over the standard library's ``urllib``.

Every method returns the decoded JSON payload inside the wrapper key (a dict, or a list for listings);
an HTTP error raises :class:`ClientError` carrying the status code, the server's message and the request id
the API answered with (``X-OpenStack-Request-ID``, which finds the request's lines in every service's log).
``global_request_id`` (``req-<uuid>``) is sent as ``X-OpenStack-Request-ID`` on every call: the API keeps it
as the global request id of its context, logged beside its own request id; ``on_answer`` sees each call's
method, URL, status and request id (the CLI's ``--debug``).

``urllib.request`` rather than ``requests``: every ``strongroom`` command is a new process, and importing
``requests`` (urllib3, charset detection, certifi, idna) cost that process a few times more than the
standard library's client, which already does what this client needs: JSON over HTTP(S) with a
timeout, the proxies of the environment (``http_proxy``, ``https_proxy``, ``no_proxy``) and the system's
certificate authorities (``SSL_CERT_FILE``/``SSL_CERT_DIR`` to use others).
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from strongroom import exceptions


class ClientError(exceptions.StrongroomError):
    """{message}"""

    def __init__(self, status: int, message: str, request_id: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.server_message = message
        self.request_id = request_id


#: What oslo.middleware's RequestId accepts as an incoming (global) request id.
REQUEST_ID_FORMAT = re.compile(r"^req-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
REQUEST_ID_HEADER = "X-OpenStack-Request-ID"

#: ``on_answer(method, url, status, request_id)``: called after every call (status 0: no answer).
OnAnswer = Callable[[str, str, int, "str | None"], None]


class Client:
    def __init__(self, base_url: str, project_id: str, token: str | None = None, timeout: float = 30,
                 global_request_id: str | None = None, on_answer: OnAnswer | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["X-Auth-Token"] = token
        if global_request_id is not None:
            if not REQUEST_ID_FORMAT.match(global_request_id):
                raise ValueError(f"request id {global_request_id!r} is not of the form req-<uuid>")
            self._headers[REQUEST_ID_HEADER] = global_request_id
        self._on_answer = on_answer
        self._opener = urllib.request.build_opener()  # the environment's proxies, the system's CAs

    def __repr__(self) -> str:  # never the token
        return f"Client({self.base_url!r}, project_id={self.project_id!r})"

    def close(self) -> None:
        """Nothing to release: every call has its own connection."""

    # -- plumbing ------------------------------------------------------------

    def _url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return f"{self.base_url}/v1/{self.project_id}{path}"

    def request(self, method: str, path: str, body: Any = None,
                params: Mapping[str, Any] | None = None) -> Any:
        """One call; returns the decoded JSON body (None for empty answers)."""
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = self._url(path)
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        if clean:
            url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode(clean, doseq=True)
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, request_id, content = resp.status, resp.headers.get(REQUEST_ID_HEADER), resp.read()
        except urllib.error.HTTPError as err:
            with err:
                request_id = err.headers.get(REQUEST_ID_HEADER)
                self._answered(method, url, err.code, request_id)
                raise ClientError(err.code, _error_message(err.read(), err.reason), request_id) from None
        except (OSError, http.client.HTTPException, ValueError) as err:  # refused, reset, timed out, bad URL
            self._answered(method, url, 0, None)
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            raise ClientError(0, f"cannot reach {self.base_url}: {reason}") from err
        self._answered(method, url, status, request_id)
        if not content:
            return None
        try:
            return json.loads(content)
        except ValueError as err:
            raise ClientError(status, "the server answered with something that is not JSON", request_id) from err

    def download(self, path: str, params: Mapping[str, Any] | None, sink: Callable[[bytes], Any],
                 piece: int = 1024 * 1024) -> int:
        """GET a streamed answer into ``sink`` piece by piece; the number of bytes received."""
        url = self._url(path)
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        if clean:
            url += "?" + urllib.parse.urlencode(clean, doseq=True)
        req = urllib.request.Request(url, headers=dict(self._headers), method="GET")
        total = 0
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                self._answered("GET", url, resp.status, resp.headers.get(REQUEST_ID_HEADER))
                while True:
                    data = resp.read(piece)
                    if not data:
                        break
                    sink(data)
                    total += len(data)
                length = resp.headers.get("Content-Length")
        except urllib.error.HTTPError as err:
            with err:
                request_id = err.headers.get(REQUEST_ID_HEADER)
                self._answered("GET", url, err.code, request_id)
                raise ClientError(err.code, _error_message(err.read(), err.reason), request_id) from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            self._answered("GET", url, 0, None)
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            raise ClientError(0, f"cannot reach {self.base_url}: {reason}") from err
        if length is not None and int(length) != total:
            raise ClientError(0, f"the download ended after {total} of {length} bytes")
        return total

    def _answered(self, method: str, url: str, status: int, request_id: str | None) -> None:
        if self._on_answer is not None:
            self._on_answer(method, url, status, request_id)

    def _list(self, path: str, key: str, params: Mapping[str, Any] | None = None,
              follow: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self._pages(path, key, params, follow):
            out += page
        return out

    def _pages(self, path: str, key: str, params: Mapping[str, Any] | None,
               follow: bool) -> Iterator[list[dict[str, Any]]]:
        body = self.request("GET", path, params=params)
        yield list(body.get(key, []))
        while follow:
            links = body.get(f"{key}_links") or []
            nxt = next((link["href"] for link in links if link.get("rel") == "next"), None)
            if not nxt:
                return
            body = self.request("GET", nxt)
            yield list(body.get(key, []))

    # -- providers and protectables ------------------------------------------

    def list_providers(self, **params: Any) -> list[dict[str, Any]]:
        return self._list("/providers", "providers", params)

    def show_provider(self, provider_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/providers/{provider_id}")["provider"])

    def list_protectables(self) -> list[str]:
        return list(self.request("GET", "/protectables")["protectable_type"])

    def show_protectable(self, protectable_type: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/protectables/{protectable_type}")["protectable_type"])

    def list_protectable_instances(self, protectable_type: str, parameters: Mapping[str, Any] | None = None,
                                   **params: Any) -> list[dict[str, Any]]:
        if parameters:
            params["parameters"] = json.dumps(dict(parameters))
        return self._list(f"/protectables/{protectable_type}/instances", "instances", params)

    def show_protectable_instance(self, protectable_type: str, instance_id: str,
                                  parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        params = {"parameters": json.dumps(dict(parameters))} if parameters else None
        return dict(self.request("GET", f"/protectables/{protectable_type}/instances/{instance_id}",
                                 params=params)["instance"])

    # -- plans ----------------------------------------------------------------

    def create_plan(self, name: str, provider_id: str, resources: list[dict[str, Any]],
                    parameters: Mapping[str, Any] | None = None,
                    description: str | None = None) -> dict[str, Any]:
        plan: dict[str, Any] = {"name": name, "provider_id": provider_id, "resources": resources,
                                "parameters": dict(parameters or {})}
        if description is not None:
            plan["description"] = description
        return dict(self.request("POST", "/plans", {"plan": plan})["plan"])

    def list_plans(self, follow: bool = False, **params: Any) -> list[dict[str, Any]]:
        return self._list("/plans", "plans", params, follow)

    def show_plan(self, plan_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/plans/{plan_id}")["plan"])

    def update_plan(self, plan_id: str, **values: Any) -> dict[str, Any]:
        return dict(self.request("PUT", f"/plans/{plan_id}", {"plan": values})["plan"])

    def delete_plan(self, plan_id: str) -> None:
        self.request("DELETE", f"/plans/{plan_id}")

    # -- checkpoints ------------------------------------------------------------

    def create_checkpoint(self, provider_id: str, plan_id: str,
                          extra_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = {"checkpoint": {"plan_id": plan_id, "extra_info": dict(extra_info or {})}}
        return dict(self.request("POST", f"/providers/{provider_id}/checkpoints", body)["checkpoint"])

    def list_checkpoints(self, provider_id: str, follow: bool = False, **params: Any) -> list[dict[str, Any]]:
        return self._list(f"/providers/{provider_id}/checkpoints", "checkpoints", params, follow)

    def show_checkpoint(self, provider_id: str, checkpoint_id: str) -> dict[str, Any]:
        path = f"/providers/{provider_id}/checkpoints/{checkpoint_id}"
        return dict(self.request("GET", path)["checkpoint"])

    def read_resource_data(self, provider_id: str, checkpoint_id: str, resource_key: str, offset: int,
                           length: int) -> tuple[bytes, int]:
        """Bytes ``offset`` to ``offset + length`` of a protected volume of a checkpoint, and the volume's size.

        One ``GET .../checkpoints/{id}/resources/{key}/data`` with a ``Range`` header (doc/file-restore.md):
        the answer is short only at the end of the volume; a range starting at or past the end gives no bytes."""
        if offset < 0 or length <= 0:
            raise ValueError("offset must be >= 0 and length > 0")
        key = urllib.parse.quote(resource_key, safe="")
        url = self._url(f"/providers/{provider_id}/checkpoints/{checkpoint_id}/resources/{key}/data")
        headers = dict(self._headers, Accept="application/octet-stream",
                       Range=f"bytes={offset}-{offset + length - 1}")
        req = urllib.request.Request(url, headers=headers, method="GET")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, request_id = resp.status, resp.headers.get(REQUEST_ID_HEADER)
                content_range = resp.headers.get("Content-Range") or ""
                content = resp.read()
        except urllib.error.HTTPError as err:
            with err:
                request_id = err.headers.get(REQUEST_ID_HEADER)
                self._answered("GET", url, err.code, request_id)
                if err.code == 416:  # past the end: the size is in "bytes */SIZE"
                    return b"", _range_total(err.headers.get("Content-Range") or "", err.code, request_id)
                raise ClientError(err.code, _error_message(err.read(), err.reason), request_id) from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            self._answered("GET", url, 0, None)
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            raise ClientError(0, f"cannot reach {self.base_url}: {reason}") from err
        self._answered("GET", url, status, request_id)
        if status == 206:
            return content, _range_total(content_range, status, request_id)
        # 200: the whole volume (a server that ignored the range)
        return content[offset:offset + length], len(content)

    def delete_checkpoint(self, provider_id: str, checkpoint_id: str) -> None:
        self.request("DELETE", f"/providers/{provider_id}/checkpoints/{checkpoint_id}")

    def copy_checkpoints(self, provider_id: str, plan_id: str, target_provider_id: str,
                         checkpoint_id: str | None = None, retention_lock_days: int | None = None) -> dict[str, Any]:
        """Karbor's copy action: ``checkpoint_id`` to ``target_provider_id``'s bank, or without it every
        available checkpoint of the plan the target lacks (locked there for ``retention_lock_days``); the
        answer lists the ids whose copy started."""
        parameters: dict[str, Any] = {"target_provider_id": target_provider_id}
        if checkpoint_id:
            parameters["checkpoint_id"] = checkpoint_id
        if retention_lock_days is not None:
            parameters["retention_lock_days"] = retention_lock_days
        body = {"copy": {"plan_id": plan_id, "parameters": parameters}}
        return dict(self.request("POST", f"/providers/{provider_id}/checkpoints/action", body)["copy"])

    def reset_checkpoint_state(self, provider_id: str, checkpoint_id: str, state: str) -> None:
        self.request("PUT", f"/providers/{provider_id}/checkpoints/{checkpoint_id}",
                     {"os-resetState": {"state": state}})

    # -- restores and verifications ---------------------------------------------

    # -- files inside a checkpoint's volume --------------------------------------------

    @staticmethod
    def _resource_path(provider_id: str, checkpoint_id: str, resource: str | None) -> str:
        key = urllib.parse.quote(resource or "-", safe=":")
        return f"/providers/{provider_id}/checkpoints/{checkpoint_id}/resources/{key}"

    def show_checkpoint_volume(self, provider_id: str, checkpoint_id: str,
                               resource: str | None = None) -> dict[str, Any]:
        return dict(self.request("GET", self._resource_path(provider_id, checkpoint_id, resource) + "/volume")
                    ["volume"])

    def list_checkpoint_files(self, provider_id: str, checkpoint_id: str, path: str, resource: str | None = None,
                              partition: int | None = None) -> dict[str, Any]:
        return dict(self.request("GET", self._resource_path(provider_id, checkpoint_id, resource) + "/files",
                                 params={"path": path, "partition": partition})["directory"])

    def stat_checkpoint_file(self, provider_id: str, checkpoint_id: str, path: str, resource: str | None = None,
                             partition: int | None = None) -> dict[str, Any]:
        return dict(self.request("GET", self._resource_path(provider_id, checkpoint_id, resource) + "/files/stat",
                                 params={"path": path, "partition": partition})["stat"])

    def download_checkpoint_file(self, provider_id: str, checkpoint_id: str, path: str,
                                 sink: Callable[[bytes], Any], resource: str | None = None,
                                 partition: int | None = None) -> int:
        return self.download(self._resource_path(provider_id, checkpoint_id, resource) + "/files/content",
                             {"path": path, "partition": partition}, sink)

    def download_checkpoint_archive(self, provider_id: str, checkpoint_id: str, paths: list[str],
                                    sink: Callable[[bytes], Any], resource: str | None = None,
                                    partition: int | None = None) -> int:
        return self.download(self._resource_path(provider_id, checkpoint_id, resource) + "/files/archive",
                             {"path": paths, "partition": partition}, sink)

    def diff_checkpoints(self, provider_id: str, checkpoint_id: str, other_checkpoint_id: str,
                         resource: str | None = None, path: str | None = None,
                         partition: int | None = None) -> dict[str, Any]:
        return dict(self.request("GET", self._resource_path(provider_id, checkpoint_id, resource) + "/diff",
                                 params={"to": other_checkpoint_id, "path": path, "partition": partition})["diff"])

    def create_restore(self, provider_id: str, checkpoint_id: str,
                       parameters: Mapping[str, Any] | None = None,
                       restore_target: str | None = None,
                       restore_auth: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"provider_id": provider_id, "checkpoint_id": checkpoint_id,
                                "parameters": dict(parameters or {})}
        if restore_target is not None:
            body["restore_target"] = restore_target
        if restore_auth is not None:
            body["restore_auth"] = dict(restore_auth)
        return dict(self.request("POST", "/restores", {"restore": body})["restore"])

    def list_restores(self, follow: bool = False, **params: Any) -> list[dict[str, Any]]:
        return self._list("/restores", "restores", params, follow)

    def show_restore(self, restore_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/restores/{restore_id}")["restore"])

    def create_verification(self, provider_id: str, checkpoint_id: str,
                            parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = {"provider_id": provider_id, "checkpoint_id": checkpoint_id,
                "parameters": dict(parameters or {})}
        return dict(self.request("POST", "/verifications", {"verification": body})["verification"])

    def list_verifications(self, follow: bool = False, **params: Any) -> list[dict[str, Any]]:
        return self._list("/verifications", "verifications", params, follow)

    def show_verification(self, verification_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/verifications/{verification_id}")["verification"])

    # -- operation logs -----------------------------------------------------------

    def list_operation_logs(self, follow: bool = False, **params: Any) -> list[dict[str, Any]]:
        return self._list("/operation_logs", "operation_logs", params, follow)

    def show_operation_log(self, log_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/operation_logs/{log_id}")["operation_log"])

    # -- triggers and scheduled operations -------------------------------------------

    def create_trigger(self, name: str, properties: Mapping[str, Any], trigger_type: str = "time") -> dict[str, Any]:
        body = {"trigger_info": {"name": name, "type": trigger_type, "properties": dict(properties)}}
        return dict(self.request("POST", "/triggers", body)["trigger_info"])

    def list_triggers(self, follow: bool = False, **params: Any) -> list[dict[str, Any]]:
        return self._list("/triggers", "triggers", params, follow)

    def show_trigger(self, trigger_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/triggers/{trigger_id}")["trigger_info"])

    def update_trigger(self, trigger_id: str, name: str | None = None,
                       properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if name is not None:
            info["name"] = name
        if properties:
            info["properties"] = dict(properties)
        return dict(self.request("PUT", f"/triggers/{trigger_id}", {"trigger_info": info})["trigger_info"])

    def delete_trigger(self, trigger_id: str) -> None:
        self.request("DELETE", f"/triggers/{trigger_id}")

    def create_scheduled_operation(self, name: str, operation_type: str, trigger_id: str,
                                   operation_definition: Mapping[str, Any],
                                   description: str | None = None) -> dict[str, Any]:
        op: dict[str, Any] = {"name": name, "operation_type": operation_type, "trigger_id": trigger_id,
                              "operation_definition": dict(operation_definition)}
        if description is not None:
            op["description"] = description
        return dict(self.request("POST", "/scheduled_operations", {"scheduled_operation": op})["scheduled_operation"])

    def list_scheduled_operations(self, follow: bool = False, **params: Any) -> list[dict[str, Any]]:
        return self._list("/scheduled_operations", "operations", params, follow)  # Karbor's key

    def show_scheduled_operation(self, operation_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/scheduled_operations/{operation_id}")["scheduled_operation"])

    def delete_scheduled_operation(self, operation_id: str) -> None:
        self.request("DELETE", f"/scheduled_operations/{operation_id}")

    def suspend_scheduled_operation(self, operation_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/scheduled_operations/{operation_id}/action",
                                 {"suspend": {}})["scheduled_operation"])

    def resume_scheduled_operation(self, operation_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/scheduled_operations/{operation_id}/action",
                                 {"resume": {}})["scheduled_operation"])

    def list_scheduled_operation_logs(self, operation_id: str, follow: bool = False,
                                      **params: Any) -> list[dict[str, Any]]:
        return self._list(f"/scheduled_operations/{operation_id}/logs", "scheduled_operation_logs", params, follow)
    # -- services (admin) ------------------------------------------------------------

    def list_alerts(self, **params: Any) -> list[dict[str, Any]]:
        """``active``, ``severity``, ``all_tenants`` filter the list."""
        return self._list("/alerts", "alerts", params)

    def usage(self, provider_id: str | None = None, all_tenants: bool = False) -> list[dict[str, Any]]:
        """One row per provider (and project, with ``all_tenants``) of what the banks hold."""
        params: dict[str, Any] = {"provider_id": provider_id}
        if all_tenants:
            params["all_tenants"] = 1
        return self._list("/usage", "usage", params)

    def list_pools(self) -> list[dict[str, Any]]:
        """Every provider's block backend pools and their capacity (admin)."""
        return self._list("/pools", "pools")

    def list_services(self, **params: Any) -> list[dict[str, Any]]:
        """``host``/``binary`` filter the list."""
        return self._list("/os-services", "services", params)

    def update_service(self, service_id: int | str, status: str,
                       disabled_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if disabled_reason is not None:
            body["disabled_reason"] = disabled_reason
        return dict(self.request("PUT", f"/os-services/{service_id}", body)["service"])


def _range_total(content_range: str, status: int, request_id: str | None) -> int:
    """The size of the whole from a ``Content-Range`` header (``bytes 0-9/1234`` or ``bytes */1234``)."""
    match = re.fullmatch(r"bytes (?:\d+-\d+|\*)/(\d+)", content_range.strip())
    if match is None:
        raise ClientError(status, f"the server answered a range with Content-Range {content_range!r}", request_id)
    return int(match.group(1))


def _error_message(content: bytes, reason: str) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode(errors="replace").strip()[:500] or reason
    if isinstance(body, dict) and len(body) == 1:
        (inner,) = body.values()
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
    return json.dumps(body)[:500]
