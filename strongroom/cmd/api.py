"""``strongroom-api``: the REST API on a threaded WSGI server, talking to protection over RPC.

Under a WSGI server (gunicorn, uwsgi), deployments serve ``strongroom.api.wsgi:application`` instead.
"""

from __future__ import annotations

import sys

from strongroom.cmd import deployed


def main(argv: list[str] | None = None) -> int:
    return deployed.run(argv, "strongroom-api", run_api=True, run_protection=False)


if __name__ == "__main__":
    sys.exit(main())
