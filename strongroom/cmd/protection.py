"""``strongroom-protection``: the protection service (providers, banks, flows) on the RPC transport."""

from __future__ import annotations

import sys

from strongroom.cmd import deployed


def main(argv: list[str] | None = None) -> int:
    return deployed.run(argv, "strongroom-protection", run_api=False, run_protection=True)


if __name__ == "__main__":
    sys.exit(main())
