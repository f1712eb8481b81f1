"""``strongroom-operationengine``: plans, claims and runs scheduled operations (any number of them share the
metadata store; each fire runs once), calling protection over RPC."""

from __future__ import annotations

import sys

from strongroom.cmd import deployed


def main(argv: list[str] | None = None) -> int:
    return deployed.run(argv, "strongroom-operationengine", run_api=False, run_protection=False,
                        run_operationengine=True)


if __name__ == "__main__":
    sys.exit(main())
