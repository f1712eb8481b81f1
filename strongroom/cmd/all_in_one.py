"""``strongroom-all-in-one``: the embedded default, every service in one process.

sqlite under the state directory, the in-process RPC transport, the ``fs`` bank
and ``loopback`` volumes of ``providers.d/local.conf``, no authentication,
bound to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import sys

from strongroom.cmd import common

LOG = logging.getLogger("strongroom.all-in-one")


DESCRIPTION = "Every Strongroom service in one process: the embedded default (no authentication, 127.0.0.1 only)."

EPILOG = ("It listens on http://127.0.0.1:8799 and keeps all its state (sqlite metadata, the fs bank, the "
          "loopback volumes, the local key file) in ./.strongroom. To keep the state elsewhere, set "
          "STRONGROOM_STATE_DIR=/path, or give a file with --config-file: the state directory is state_dir in its "
          "[DEFAULT] section, the port bind_port in its [api] section (e.g. [api] bind_port = 8800). "
          "etc/strongroom/strongroom.conf.sample lists every option.")


def main(argv: list[str] | None = None) -> int:
    conf = common.setup(argv, "strongroom-all-in-one", description=DESCRIPTION, epilog=EPILOG)
    from strongroom.service import Services, resolve_providers_dir

    # Always in-process: oslo.messaging defaults transport_url to rabbit://, which is for deployments.
    services = Services(conf, transport_url="fake://", embedded=True)
    try:
        services.start()
    except Exception as err:  # noqa: BLE001 - start-up errors are shown as one clear line
        from strongroom import exceptions

        if isinstance(err, exceptions.StrongroomError):
            print(f"strongroom-all-in-one: cannot start: {err}", file=sys.stderr)
            services.stop(graceful=False)
            return 2
        raise
    state = os.path.abspath(conf.state_dir)
    from strongroom import keys
    from strongroom.keys.local import key_file

    kek = (f"{key_file(conf)}  (BACK IT UP: without it no checkpoint can be read)"
           if conf.key_manager.backend == keys.LOCAL_BACKEND else f"key manager {conf.key_manager.backend!r}")
    print(f"Strongroom all-in-one is running on {services.url}\n"
          f"  state directory : {state}\n"
          f"  metadata        : {services.db.url_for_display}\n"
          f"  providers from  : {resolve_providers_dir(conf)}\n"
          f"  loopback volumes: {os.path.join(state, 'volumes')}  (drop raw images here)\n"
          f"  fs bank         : {os.path.join(state, 'bank')}\n"
          f"  encryption keys : {kek}\n"
          f"  admin token     : {services.admin_token_file or 'admin_token of the configuration'}"
          f"  (the strongroom CLI reads it)\n"
          f"Try: .venv/bin/strongroom --url {services.url} provider list\n"
          f"Press Ctrl-C to stop.", flush=True)

    def stop(_: int) -> None:
        LOG.info("stopping: waiting up to 30 s for running operations")
        services.stop(graceful=True)

    common.wait_for_signal(stop)
    LOG.info("stopped")
    os._exit(0)  # runs not finished within the grace period are recovered at the next start


if __name__ == "__main__":
    sys.exit(main())
