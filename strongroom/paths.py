"""Where the files shipped beside the code are: a checkout's copy, else the installed one.

A source checkout (or an editable install) has them at the top of the tree (``providers.d/``,
``etc/strongroom/``); a wheel installs them as data files under ``<sys.prefix>/share/strongroom/``
(setup.cfg ``[options.data_files]``).
"""

from __future__ import annotations

import os
import sys

#: The top of the source tree: the directory holding the ``strongroom`` package.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_data_dir(prefix: str | None = None) -> str:
    """Where a ``pip install`` puts the data files: ``<sys.prefix>/share/strongroom``."""
    return os.path.join(sys.prefix if prefix is None else prefix, "share", "strongroom")


def data_path(relative: str, prefix: str | None = None) -> str:
    """``relative`` (e.g. ``providers.d``) in the source tree when it is there, else under
    :func:`shared_data_dir` (returned even when absent there too, for the caller's error message)."""
    in_tree = os.path.join(SOURCE_ROOT, relative)
    if os.path.exists(in_tree):
        return in_tree
    return os.path.join(shared_data_dir(prefix), relative)
