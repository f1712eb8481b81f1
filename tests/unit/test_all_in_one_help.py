"""``strongroom-all-in-one --help`` says how to move its port and its state directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_help_says_how_to_change_the_port_and_the_state_directory() -> None:
    shown = subprocess.run([str(BIN / "strongroom-all-in-one"), "--help"], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # argparse wraps the lines
    assert "http://127.0.0.1:8799" in text and "./.strongroom" in text
    assert "STRONGROOM_STATE_DIR" in text and "state_dir in its [DEFAULT] section" in text
    assert "bind_port in its [api] section" in text and "--config-file" in text
