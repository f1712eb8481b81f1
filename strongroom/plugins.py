"""Plugin loading: the one place that turns (group, name) into a class.

Every family has its own entry-point group (``doc/architecture.md``, plugin families).  A
missing or broken plugin raises :class:`PluginLoadError` naming the group, the
name and, when given, the provider file that asked for it.  Tests inject
classes with :func:`register_test_plugin` instead of installing entry points.
"""

from __future__ import annotations

import threading
from typing import Any

from stevedore import driver
from stevedore import exception as stevedore_exc

from strongroom import exceptions

BANKS = "strongroom.banks"
PROTECTIONS = "strongroom.protections"
PROTECTABLES = "strongroom.protectables"
BLOCK_BACKENDS = "strongroom.block_backends"
PERSISTENCE = "strongroom.persistence"

_injected: dict[tuple[str, str], type] = {}
_lock = threading.Lock()


def register_test_plugin(group: str, name: str, cls: type) -> None:
    """Make ``cls`` loadable as ``name`` in ``group`` without an entry point."""
    with _lock:
        _injected[(group, name)] = cls


def unregister_test_plugin(group: str, name: str) -> None:
    with _lock:
        _injected.pop((group, name), None)


def load_class(group: str, name: str, source: str | None = None) -> type[Any]:
    """Return the class registered as ``name`` in ``group``."""
    with _lock:
        injected = _injected.get((group, name))
    if injected is not None:
        return injected
    where = f" (asked for by {source})" if source else ""
    try:
        manager = driver.DriverManager(namespace=group, name=name, invoke_on_load=False,
                                       on_load_failure_callback=_reraise)
    except stevedore_exc.NoMatches as err:
        raise exceptions.PluginLoadError(name=name, group=group, where=where,
                                         reason="no such plugin is installed") from err
    except stevedore_exc.MultipleMatches as err:
        raise exceptions.PluginLoadError(name=name, group=group, where=where,
                                         reason="several plugins have this name") from err
    except Exception as err:  # noqa: BLE001 - an import error in the plugin's module
        raise exceptions.PluginLoadError(name=name, group=group, where=where,
                                         reason=f"{type(err).__name__}: {err}") from err
    cls = manager.driver
    if not isinstance(cls, type):
        raise exceptions.PluginLoadError(name=name, group=group, where=where, reason="entry point is not a class")
    return cls


def _reraise(manager: Any, entrypoint: Any, err: BaseException) -> None:
    raise err


def names(group: str) -> list[str]:
    """Names installed (or injected) in ``group``, sorted."""
    from stevedore import extension

    mgr: extension.ExtensionManager = extension.ExtensionManager(namespace=group, invoke_on_load=False)
    with _lock:
        injected = {n for g, n in _injected if g == group}
    return sorted(set(mgr.names()) | injected)
