"""Request context: who is asking, for which project, with which request id."""

from __future__ import annotations

from typing import Any

from oslo_context import context as oslo_context


class RequestContext(oslo_context.RequestContext):
    """An oslo.context RequestContext that always knows its project."""

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        values.pop("auth_token", None)  # never sent over RPC or logged
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], **kwargs: Any) -> RequestContext:
        ctx = super().from_dict(values, **kwargs)
        assert isinstance(ctx, RequestContext)
        return ctx


def get_admin_context(project_id: str | None = None) -> RequestContext:
    return RequestContext(project_id=project_id, is_admin=True, roles=["admin"], overwrite=False)


def get_context(project_id: str, user_id: str | None = None, is_admin: bool = False,
                roles: list[str] | None = None, request_id: str | None = None,
                global_request_id: str | None = None) -> RequestContext:
    kwargs: dict[str, Any] = {}
    if request_id:
        kwargs["request_id"] = request_id
    if global_request_id:
        kwargs["global_request_id"] = global_request_id
    return RequestContext(project_id=project_id, user_id=user_id, is_admin=is_admin,
                          roles=roles or (["admin", "member", "reader"] if is_admin else ["member", "reader"]),
                          overwrite=False, **kwargs)
