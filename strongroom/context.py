"""Request context: who is asking, for which project, with which request id.

The *current* context of a thread is oslo.context's thread-local one: oslo.log's formatter prints its
request id, global request id, user and project on every line the thread logs.  The API makes each
request's context current for the request (:mod:`strongroom.api.app`); an RPC server's handler thread gets
the caller's (oslo.messaging's dispatcher deserializes it there, and building an oslo.context
``RequestContext`` makes it current); a run's threads get the context of the request that started it
(:func:`current`, :func:`carrying`), also when another worker resumes it from the jobboard (the job holds the
context, :class:`strongroom.protection.conductor.JobSpec`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

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


def get_current() -> oslo_context.RequestContext | None:
    """This thread's current context (None: none)."""
    return oslo_context.get_current()


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Put back, at the end of the block, the context this thread had at its start (whatever the block made
    current: building an oslo.context ``RequestContext`` makes it current).  A pool's thread then never
    logs under the context of a run it served before."""
    previous = oslo_context.get_current()
    try:
        yield
    finally:
        _set_current(previous)


@contextlib.contextmanager
def current(ctx: oslo_context.RequestContext | None) -> Iterator[None]:
    """Make ``ctx`` this thread's current context for the block (None: no context), then put back the one
    the thread had (:func:`scope`)."""
    with scope():
        _set_current(ctx)
        yield


def _set_current(ctx: oslo_context.RequestContext | None) -> None:
    if ctx is not None:
        ctx.update_store()
    else:  # oslo.context has no public way to clear it: its thread-local holds the current one
        oslo_context._request_store.context = None


_P = ParamSpec("_P")
_R = TypeVar("_R")


def carrying(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` run, in whatever thread, under the context current now (when this is called): what a task
    handed to a thread pool needs to log under the request that made it."""
    ctx = oslo_context.get_current()

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with current(ctx):
            return fn(*args, **kwargs)

    return run
