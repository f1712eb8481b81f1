"""Shared ``main`` of the deployed programs: one part of the services, on the configured transport."""

from __future__ import annotations

import logging
import os
import sys

from strongroom.cmd import common

LOG = logging.getLogger(__name__)


def run(argv: list[str] | None, prog: str, *, run_api: bool, run_protection: bool,
        run_operationengine: bool = False) -> int:
    conf = common.setup(argv, prog)
    from strongroom import exceptions
    from strongroom.service import Services

    services = Services(conf, run_api=run_api, run_protection=run_protection,
                        run_operationengine=run_operationengine, transport_url=conf.transport_url)
    try:
        services.start()
    except exceptions.StrongroomError as err:
        print(f"{prog}: cannot start: {err}", file=sys.stderr)
        services.stop(graceful=False)
        return 2
    if run_api:
        where = services.url
    elif run_protection:
        where = f"topic {conf.protection_topic} on host {conf.host}"
    else:
        where = f"engine {services.operationengine.owner}"
    LOG.info("%s running: %s", prog, where)
    common.wait_for_signal(lambda _: services.stop(graceful=True))
    os._exit(0)
