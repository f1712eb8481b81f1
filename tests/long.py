"""The cases ``make long`` runs and ``make test`` leaves out: longer variants of what ``make test`` runs in a
shorter case (the same code on another bank, or at a larger size).  ``STRONGROOM_LONG=1`` turns them on."""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("STRONGROOM_LONG") == "1"

#: Skips the case unless ``STRONGROOM_LONG=1`` (``make long``), saying so in the summary.
only_long = pytest.mark.skipif(not LONG, reason="a longer variant of a case make test runs: make long runs it")
