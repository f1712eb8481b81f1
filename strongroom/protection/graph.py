"""The resource graph: plan resources plus everything they depend on, cycle-checked.

Serialized the way Karbor did (a packed graph: nodes keyed by short ids plus an
adjacency list), but as real JSON text that ``json.loads`` parses.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from strongroom import exceptions
from strongroom.objects.records import Resource


@dataclasses.dataclass
class GraphNode:
    resource: Resource
    dependents: list[GraphNode] = dataclasses.field(default_factory=list)


def build_graph(roots: Iterable[Resource],
                dependents_of: Callable[[Resource], list[Resource]]) -> list[GraphNode]:
    """Expand ``roots`` with their dependents (recursively); one node per ``type#id``.

    Raises :class:`ResourceGraphCycle` naming the cycle.
    """
    nodes: dict[str, GraphNode] = {}
    state: dict[str, str] = {}  # visiting | done

    def visit(resource: Resource, path: list[str]) -> GraphNode:
        key = resource.key
        if state.get(key) == "visiting":
            cycle = path[path.index(key):] + [key]
            raise exceptions.ResourceGraphCycle(cycle=" -> ".join(cycle))
        if key in nodes and state.get(key) == "done":
            return nodes[key]
        node = nodes.setdefault(key, GraphNode(resource))
        state[key] = "visiting"
        for child in dependents_of(resource):
            child_node = visit(child, path + [key])
            if child_node not in node.dependents:
                node.dependents.append(child_node)
        state[key] = "done"
        return node

    root_nodes: list[GraphNode] = []
    for resource in roots:
        node = visit(resource, [])
        if node not in root_nodes:
            root_nodes.append(node)
    # A root that is someone else's dependent is not a root.
    dependent_keys = {d.resource.key for n in nodes.values() for d in n.dependents}
    return [n for n in root_nodes if n.resource.key not in dependent_keys]


def iter_nodes(roots: Iterable[GraphNode]) -> Iterator[GraphNode]:
    """Every node once, parents before dependents (pre-order, deterministic)."""
    seen: set[str] = set()
    stack = list(reversed(list(roots)))
    while stack:
        node = stack.pop()
        if node.resource.key in seen:
            continue
        seen.add(node.resource.key)
        yield node
        stack.extend(reversed(node.dependents))


def outline(roots: Iterable[GraphNode]) -> Iterator[tuple[int, GraphNode]]:
    """Every node once with its depth (0: a root), parents before dependents, each node's dependents right
    under it: the order of an indented tree.  A dependent of several parents is shown under the first."""
    seen: set[str] = set()
    stack = [(0, node) for node in reversed(list(roots))]
    while stack:
        depth, node = stack.pop()
        if node.resource.key in seen:
            continue
        seen.add(node.resource.key)
        yield depth, node
        stack.extend((depth + 1, dep) for dep in reversed(node.dependents))


def serialize(roots: Iterable[GraphNode]) -> str:
    """Karbor's packed form as JSON: ``[{"0x0": [type, id, name, extra_info]}, [["0x0", ["0x1"]], ...]]``."""
    ids: dict[str, str] = {}
    nodes_out: dict[str, list[Any]] = {}
    adjacency: list[list[Any]] = []
    all_nodes = list(iter_nodes(roots))
    for index, node in enumerate(all_nodes):
        short = hex(index)
        ids[node.resource.key] = short
        r = node.resource
        nodes_out[short] = [r.type, r.id, r.name, r.extra_info]
    for node in all_nodes:
        if node.dependents:
            adjacency.append([ids[node.resource.key], [ids[d.resource.key] for d in node.dependents]])
    return json.dumps([nodes_out, adjacency], sort_keys=True)


def deserialize(text: str) -> list[GraphNode]:
    """Inverse of :func:`serialize`; returns the roots."""
    try:
        nodes_in, adjacency = json.loads(text)
    except (ValueError, TypeError) as err:
        raise exceptions.ProtectionError(reason=f"resource graph is not valid: {err}") from err
    nodes = {short: GraphNode(Resource(type=v[0], id=v[1], name=v[2], extra_info=v[3] or {}))
             for short, v in nodes_in.items()}
    children: set[str] = set()
    for parent, kids in adjacency:
        nodes[parent].dependents = [nodes[k] for k in kids]
        children.update(kids)
    return [n for short, n in sorted(nodes.items(), key=lambda kv: int(kv[0], 16)) if short not in children]
