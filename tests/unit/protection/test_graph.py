from __future__ import annotations

import json

import pytest

from strongroom import exceptions
from strongroom.objects.records import Resource
from strongroom.protection import graph


def r(name: str) -> Resource:
    return Resource(id=name, type="T", name=name)


def test_dependents_are_expanded_once_and_serialized_as_json() -> None:
    deps = {"a": [r("b"), r("c")], "b": [r("c")], "c": []}
    roots = graph.build_graph([r("a"), r("c")], lambda res: deps[res.id])
    assert [n.resource.id for n in roots] == ["a"]  # c is a's dependent, not a root
    assert [n.resource.id for n in graph.iter_nodes(roots)] == ["a", "b", "c"]
    text = graph.serialize(roots)
    nodes, adjacency = json.loads(text)
    assert len(nodes) == 3 and len(adjacency) == 2
    again = graph.deserialize(text)
    assert [n.resource.key for n in graph.iter_nodes(again)] == ["T#a", "T#b", "T#c"]


def test_cycle_is_rejected_naming_it() -> None:
    deps = {"a": [r("b")], "b": [r("c")], "c": [r("a")]}
    with pytest.raises(exceptions.ResourceGraphCycle, match="T#a -> T#b -> T#c -> T#a"):
        graph.build_graph([r("a")], lambda res: deps[res.id])


def test_outline_is_an_indented_tree_showing_a_shared_dependent_once() -> None:
    deps = {"a": [r("b"), r("c")], "b": [r("c"), r("d")], "c": [], "d": [], "e": []}
    roots = graph.deserialize(graph.serialize(graph.build_graph([r("a"), r("e")], lambda res: deps[res.id])))
    assert [(depth, n.resource.id) for depth, n in graph.outline(roots)] == [
        (0, "a"), (1, "b"), (2, "c"), (2, "d"), (0, "e")]
