"""Running the ``strongroom`` CLI in-process against the API test stack (shared by the CLI tests)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apiharness import Stack

from strongroom.client.cli import main


def run(stack: Stack, capsys: pytest.CaptureFixture[str], *argv: str, project: str = "cli-proj",
        token: str = "t", sleep: Any = None) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--url", stack.url, "--project", project, "--token", token, *argv],
                sleep=sleep or (lambda _s: None))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(stack: Stack, capsys: pytest.CaptureFixture[str], *argv: str, **kw: Any) -> Any:
    code, out, err = run(stack, capsys, "-f", "json", *argv, **kw)
    assert code == 0, err
    return json.loads(out)
