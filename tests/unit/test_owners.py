"""Each invariant has one owner: these tests read the package's source and fail on a second writer.

* A checkpoint's catalogue row is written only by ``strongroom/protection/catalogue.py`` (which writes the
  bank index first, through ``protection/index.py``: an import-linter contract keeps that module private).
* Bank keys are spelled only in ``strongroom/bank_plugins/layout.py``: no other module holds a string that
  looks like a key of the bank layout.
* The transition table is skipped (``check=False``) only where the bank's copy was judged already.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import strongroom

PACKAGE = Path(strongroom.__file__).parent
CATALOGUE = PACKAGE / "protection" / "catalogue.py"
LAYOUT = PACKAGE / "bank_plugins" / "layout.py"
#: The metadata store itself and the HTTP client (whose create_checkpoint is a REST call) are not writers.
NOT_WRITERS = (PACKAGE / "db", PACKAGE / "client")
CATALOGUE_WRITES = {"create_checkpoint", "update_checkpoint"}
#: Fragments of bank keys: top-level prefixes of the layout, and the names of objects inside a checkpoint.
KEY_FRAGMENT = re.compile(r"^(checkpoints|projects|indices|leases|clock|gc/sweeping)/|"
                          r"(^|/)(index|manifest|resume|metadata)\.json$|^parts/")
#: The conformance suites in strongroom.testing use sample keys to test any bank, not Strongroom's layout.
SAMPLE_KEYS = PACKAGE / "testing"


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        yield path, ast.parse(path.read_text(), str(path))


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_only_the_catalogue_writes_checkpoint_rows() -> None:
    writers = []
    for path, tree in _modules():
        if path == CATALOGUE or any(path.is_relative_to(p) for p in NOT_WRITERS):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in CATALOGUE_WRITES):
                writers.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.func.attr}")
    assert writers == [], "checkpoint rows written outside protection/catalogue.py"


def test_only_the_catalogue_skips_the_transition_table() -> None:
    skips = []
    for path, tree in _modules():
        if path == CATALOGUE or path.is_relative_to(PACKAGE / "db"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and any(
                    k.arg == "check" and isinstance(k.value, ast.Constant) and k.value.value is False
                    for k in node.keywords):
                skips.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert skips == []


def test_only_the_layout_spells_bank_keys() -> None:
    spelled = []
    for path, tree in _modules():
        if path == LAYOUT or path.is_relative_to(SAMPLE_KEYS):
            continue
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
            else:
                continue
            if KEY_FRAGMENT.search(text):
                spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {text!r}")
    assert spelled == [], "bank key fragments spelled outside bank_plugins/layout.py"


def test_the_key_check_sees_a_stray_key() -> None:
    assert KEY_FRAGMENT.search("checkpoints/") and KEY_FRAGMENT.search("data/manifest.json")
    assert not KEY_FRAGMENT.search("the checkpoint's index")
