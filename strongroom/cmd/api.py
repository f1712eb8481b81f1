"""``strongroom-api``: the REST API on a threaded WSGI server, talking to protection over RPC.

For gunicorn/uwsgi, deployments serve :func:`strongroom.api.app.make_app` instead.
"""

from __future__ import annotations

import sys

from strongroom.cmd import deployed


def main(argv: list[str] | None = None) -> int:
    return deployed.run(argv, "strongroom-api", run_api=True, run_protection=False)


if __name__ == "__main__":
    sys.exit(main())
