"""Names or ids: the one lookup of a plan, provider, trigger or scheduled operation by its id, else its name,
shared by the ``strongroom`` CLI and the ``openstack data protection`` commands."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from typing import Any

from strongroom.client.client import Client, ClientError


class LookupFailed(ClientError):
    """No item has the name or id, or several share the name (the message lists their ids)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


def find(kind: str, items: Iterable[dict[str, Any]], name_or_id: str) -> dict[str, Any]:
    """The one item whose id, else whose name, is ``name_or_id``; :class:`LookupFailed` naming the matches
    when several share the name, or saying none has it."""
    items = list(items)
    for item in items:
        if item.get("id") == name_or_id:
            return item
    named = [item for item in items if item.get("name") == name_or_id]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(str(item.get("id")) for item in named)
        raise LookupFailed(f"{len(named)} {kind}s are named {name_or_id!r} ({ids}): give the id")
    raise LookupFailed(f"no {kind} with the name or id {name_or_id!r}")


def plan_id(c: Client, name_or_id: str) -> str:
    return str(find("plan", c.list_plans(follow=True), name_or_id)["id"])


def provider_id(c: Client, name_or_id: str) -> str:
    return str(find("provider", c.list_providers(), name_or_id)["id"])


def trigger_id(c: Client, name_or_id: str) -> str:
    return str(find("trigger", c.list_triggers(follow=True), name_or_id)["id"])


def scheduled_operation_id(c: Client, name_or_id: str) -> str:
    return str(find("scheduled operation", c.list_scheduled_operations(follow=True), name_or_id)["id"])


#: The ``strongroom`` CLI's argument names (argparse ``dest``) that take a name or an id, and their lookup.
ARGUMENTS: dict[str, Callable[[Client, str], str]] = {
    "provider_id": provider_id, "target_provider_id": provider_id, "plan_id": plan_id,
    "trigger_id": trigger_id, "operation_id": scheduled_operation_id,
}


#: What the service's ids look like (uuid4 text): such a value is taken as an id without a lookup.
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def resolve_arguments(c: Client, args: argparse.Namespace) -> None:
    """Replace each name among ``args``' :data:`ARGUMENTS` by its item's id (one listing per name given).

    A value shaped like a UUID is an id as it is: no listing, and the service's own answer (a 404 naming it)
    if there is no such item."""
    for dest, lookup in ARGUMENTS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and value and not UUID.match(value):
            setattr(args, dest, lookup(c, value))
