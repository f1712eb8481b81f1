"""Selects oslo.service's threading backend before any test imports oslo.messaging."""

from strongroom import backend

backend.init()

# Session fixtures that start real servers (only when a test asks for them).
pytest_plugins = ["tests.servers.swift", "tests.servers.moto", "tests.servers.ceph", "tests.servers.cinder",
                  "tests.servers.keystone", "tests.servers.barbican"]


def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ANN201 - pytest's hook signature
    """Under pytest-xdist (``make test`` runs ``--dist loadgroup``) each module runs whole on one worker, as
    its module-scoped fixtures (an all-in-one, a cluster) are made once; the modules that use Cinder, which
    takes half a minute to start, share one worker and its one Cinder."""
    import pytest

    for item in items:
        group = "cinder" if "cinder_service" in getattr(item, "fixturenames", ()) else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
