"""The RPC context serializer: the caller's Keystone token crosses RPC, and only there."""

from __future__ import annotations

from strongroom.context import RequestContext, get_context
from strongroom.rpc import ContextSerializer


def test_the_token_crosses_rpc_but_not_to_dict() -> None:
    ctx = get_context("p1", user_id="u1")
    ctx.auth_token = "gAAAAB-users-token"
    serializer = ContextSerializer()
    sent = serializer.serialize_context(ctx)
    assert sent["auth_token"] == "gAAAAB-users-token"
    received = serializer.deserialize_context(sent)
    assert isinstance(received, RequestContext)
    assert (received.auth_token, received.project_id, received.user_id) == ("gAAAAB-users-token", "p1", "u1")
    # What logs, job boards and the database get of a context never holds it.
    assert "auth_token" not in received.to_dict() and "gAAAAB" not in repr(received.to_dict())


def test_a_context_without_a_token_crosses_without_one() -> None:
    serializer = ContextSerializer()
    sent = serializer.serialize_context(get_context("p1"))
    assert "auth_token" not in sent
    assert serializer.deserialize_context(sent).auth_token is None
