"""One flow builder for protect, restore, verify and delete, driven by a table.

Each resource's operation has four hooks.  They become four taskflow tasks in
one graph flow, linked so that (``doc/architecture.md``, runs and hooks): within a resource
``prepare_begin -> prepare_finish -> main -> complete``; a parent's
``prepare_begin`` precedes its dependents'; dependents' ``prepare_finish`` and
``complete`` precede their parent's.  Independent resources run in parallel on
the bounded executor the caller passes (taskflow's parallel engine would
otherwise create a pool of its own per run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import Any

from taskflow import engines, task
from taskflow import exceptions as tf_exceptions
from taskflow.patterns import graph_flow
from taskflow.persistence import models

from strongroom import context as sr_context
from strongroom import exceptions
from strongroom.clock import Clock
from strongroom.objects.records import Resource
from strongroom.objects.status import ResourceStatus
from strongroom.protection.graph import GraphNode, iter_nodes
from strongroom.protection.plugin import Operation, OperationContext, OperationKind

PHASES = ("on_prepare_begin", "on_prepare_finish", "on_main", "on_complete")

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FlowSpec:
    """How one kind of run moves each resource's status."""

    kind: OperationKind
    running: ResourceStatus
    success: ResourceStatus
    failure: ResourceStatus


SPECS: dict[OperationKind, FlowSpec] = {
    OperationKind.PROTECT: FlowSpec(OperationKind.PROTECT, ResourceStatus.PROTECTING,
                                    ResourceStatus.AVAILABLE, ResourceStatus.ERROR),
    OperationKind.RESTORE: FlowSpec(OperationKind.RESTORE, ResourceStatus.RESTORING,
                                    ResourceStatus.SUCCESS, ResourceStatus.FAIL),
    OperationKind.VERIFY: FlowSpec(OperationKind.VERIFY, ResourceStatus.VERIFYING,
                                   ResourceStatus.SUCCESS, ResourceStatus.FAIL),
    OperationKind.DELETE: FlowSpec(OperationKind.DELETE, ResourceStatus.DELETING,
                                   ResourceStatus.DELETED, ResourceStatus.ERROR),
}


class ResourceTracker:
    """Per-resource status, reason and time spent in its hooks during one run; ``on_change`` persists
    statuses and reasons.  ``clock`` times the hooks (its ``monotonic``)."""

    def __init__(self, on_change: Callable[[str, str, str | None], None] | None = None,
                 clock: Clock | None = None) -> None:
        self._lock = threading.Lock()
        self.status: dict[str, str] = {}
        self.reason: dict[str, str] = {}
        #: Seconds each resource's hooks ran in this attempt (summed over its hooks: waits between them,
        #: for a parent's dependents or a free worker, are not counted).
        self.seconds: dict[str, float] = {}
        self.clock = clock or Clock()
        self._on_change = on_change

    def add_seconds(self, key: str, seconds: float) -> None:
        with self._lock:
            self.seconds[key] = self.seconds.get(key, 0.0) + max(seconds, 0.0)

    def set(self, key: str, status: str, reason: str | None = None) -> None:
        with self._lock:
            self.status[key] = status
            if reason:
                self.reason[key] = reason
        if self._on_change is not None:
            self._on_change(key, status, reason)


class HookTask(task.Task):  # type: ignore[misc]
    """Runs one hook of one resource's operation."""

    def __init__(self, phase: str, operation: Operation, ctx: OperationContext, spec: FlowSpec,
                 tracker: ResourceTracker) -> None:
        super().__init__(name=f"{phase}:{ctx.resource.key}")
        self._phase = phase
        self._operation = operation
        self._ctx = ctx
        self._spec = spec
        self._tracker = tracker

    def execute(self) -> dict[str, Any]:
        """Run the hook; the result is what it put in ``ctx.result`` (saved with the flow, so that a
        resumed run still knows what an earlier attempt's finished hooks produced)."""
        with sr_context.current(self._ctx.context):  # the flow's thread logs under the run's request
            return self._execute()

    def _execute(self) -> dict[str, Any]:
        key = self._ctx.resource.key
        if self._phase == PHASES[0]:
            self._tracker.set(key, self._spec.running)
        LOG.debug("%s of %s %s: %s", self._spec.kind, self._ctx.checkpoint_id, key, self._phase)
        started = self._tracker.clock.monotonic()
        try:
            getattr(self._operation, self._phase)(self._ctx)
        except Exception as err:
            self._tracker.set(key, self._spec.failure, f"{type(err).__name__}: {err}" if not isinstance(
                err, exceptions.StrongroomError) else str(err))
            raise
        finally:
            self._tracker.add_seconds(key, self._tracker.clock.monotonic() - started)
        if self._phase == PHASES[-1]:
            self._tracker.set(key, self._spec.success)
        return dict(self._ctx.result)


def build_flow(spec: FlowSpec, roots: Iterable[GraphNode],
               prepare: Callable[[Resource], tuple[Operation, OperationContext]],
               tracker: ResourceTracker) -> graph_flow.Flow:
    """The graph flow for ``spec.kind`` over the resource graph ``roots``."""
    flow = graph_flow.Flow(f"{spec.kind}-{uuid.uuid4()}")
    tasks: dict[str, dict[str, HookTask]] = {}
    nodes = list(iter_nodes(roots))
    for node in nodes:
        operation, ctx = prepare(node.resource)
        per_phase = {phase: HookTask(phase, operation, ctx, spec, tracker) for phase in PHASES}
        tasks[node.resource.key] = per_phase
        flow.add(*per_phase.values())
        for first, second in zip(PHASES, PHASES[1:], strict=False):
            flow.link(per_phase[first], per_phase[second])
    for node in nodes:
        mine = tasks[node.resource.key]
        for dep in node.dependents:
            theirs = tasks[dep.resource.key]
            flow.link(mine["on_prepare_begin"], theirs["on_prepare_begin"])
            flow.link(theirs["on_prepare_finish"], mine["on_prepare_finish"])
            flow.link(theirs["on_complete"], mine["on_complete"])
    return flow


def _sql_backend(url: str) -> Any:
    """taskflow's SQL persistence backend, handing out one connection object for the process.

    taskflow's ``Connection`` builds a new ``MetaData`` and its three ``Table`` objects on every
    ``get_connection()``, and an engine's storage asks for one for every atom state it saves (about twenty
    per protect of one volume).  Each new table compiles its statements anew, and SQLAlchemy's compiled
    cache (hundreds of statements per engine) keeps them and their tables: the service's heap grew by
    about 5 MiB per protect until that cache was full.  A connection holds nothing but the engine and
    those tables (every call opens its own transaction, ``close()`` does nothing), so one serves every
    caller and thread.
    """
    from taskflow.persistence.backends import impl_sqlalchemy

    class SharedConnectionBackend(impl_sqlalchemy.SQLAlchemyBackend):  # type: ignore[misc]
        def __init__(self, conf: dict[str, Any]) -> None:
            super().__init__(conf)
            self._shared: Any = None
            self._shared_lock = threading.Lock()

        def get_connection(self) -> Any:
            with self._shared_lock:
                if self._shared is None:
                    self._shared = super().get_connection()  # validated on first use, as taskflow does
                return self._shared

        def close(self) -> None:
            with self._shared_lock:
                self._shared = None
            super().close()

    from strongroom.db.drivers import engine_url

    # The URL the metadata store's driver resolved (``postgresql://`` is psycopg2's), not taskflow's own guess.
    return SharedConnectionBackend({"connection": engine_url(url) if "://" in url else url})


class FlowPersistence:
    """taskflow's SQL persistence in the metadata database: one logbook per run."""

    def __init__(self, url: str, upgrade: bool = True) -> None:
        """``upgrade``: create or upgrade taskflow's tables (deployed services leave it to
        ``strongroom-manage db sync``: several services starting at once would race)."""
        self.backend = _sql_backend(url)
        if upgrade:
            self.upgrade()

    def upgrade(self) -> None:
        with contextlib.closing(self.backend.get_connection()) as conn:
            conn.upgrade()

    def start(self, name: str) -> tuple[models.LogBook, models.FlowDetail]:
        book = models.LogBook(name)
        detail = models.FlowDetail(name, str(uuid.uuid4()))
        book.add(detail)
        with contextlib.closing(self.backend.get_connection()) as conn:
            conn.save_logbook(book)
        return book, detail

    def finish(self, book: models.LogBook) -> None:
        with contextlib.closing(self.backend.get_connection()) as conn:
            with contextlib.suppress(tf_exceptions.NotFound):
                conn.destroy_logbook(book.uuid)

    def close(self) -> None:
        self.backend.close()


def run_flow(flow: graph_flow.Flow, executor: futures.Executor, persistence: FlowPersistence | None,
             name: str, describe: Callable[[], str], book: models.LogBook | None = None,
             flow_detail: models.FlowDetail | None = None,
             keep_book: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Run ``flow`` to completion; raise :class:`FlowFailed` with every failure's reason.

    With ``book`` and ``flow_detail`` (a job's saved flow) the engine resumes from the atom
    states saved there: finished hooks are skipped, a hook left running is run again.
    Returns the results of the flow's hooks by task name.  The saved flow is destroyed at the
    end unless ``keep_book()`` (the run lost its job to another worker, which resumes that flow).
    """
    options: dict[str, Any] = {"engine": "parallel", "executor": executor}
    if persistence is not None:
        if book is None or flow_detail is None:
            book, flow_detail = persistence.start(name)
        options.update(backend=persistence.backend, book=book, flow_detail=flow_detail)
    engine = engines.load(flow, **options)
    try:
        engine.run()
        return {task.name: engine.storage.get(task.name) for task, _ in flow.iter_nodes()}
    except tf_exceptions.WrappedFailure as wrapped:
        reasons = "; ".join(str(f.exception) for f in wrapped)
        raise exceptions.FlowFailed(operation=name.split("-")[0], resource=describe(), reason=reasons,
                                    bank_failure=any(f.check(exceptions.BankError) for f in wrapped)) from None
    except exceptions.StrongroomError:
        raise
    except Exception as err:  # noqa: BLE001 - a plugin's own error: report it with its type
        raise exceptions.FlowFailed(operation=name.split("-")[0], resource=describe(),
                                    reason=f"{type(err).__name__}: {err}") from err
    finally:
        if persistence is not None and book is not None and not keep_book():
            persistence.finish(book)
