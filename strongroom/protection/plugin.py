"""Base classes of the two plugin families protection drives.

* :class:`ProtectablePlugin` (group ``strongroom.protectables``): discovers
  resources of one type, their parents and dependents.
* :class:`ProtectionPlugin` (group ``strongroom.protections``): for each
  resource type it supports, returns an :class:`Operation` per operation kind;
  the flow builder wires each operation's four hooks into one taskflow graph.

Every plugin is constructed the same way: ``cls(options, env)``, where
``options`` is its section of the provider file and ``env`` a
:class:`PluginEnvironment`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from strongroom.bank_plugins import Bank, BankSection
from strongroom.block import BlockBackend
from strongroom.context import RequestContext
from strongroom.objects.kinds import OperationKind
from strongroom.objects.records import Resource

__all__ = ["Operation", "OperationContext", "OperationKind", "PluginEnvironment", "ProtectableEnvironment",
           "ProtectablePlugin", "ProtectionPlugin"]


@dataclasses.dataclass
class PluginEnvironment:
    """What a plugin may use: its provider's identity and block backends."""

    provider_id: str
    provider_file: str
    block_backends: Callable[[str], BlockBackend]


@dataclasses.dataclass
class OperationContext:
    """Everything a hook receives.  One instance per resource per run."""

    context: RequestContext
    kind: OperationKind
    checkpoint_id: str
    project_id: str
    resource: Resource
    parameters: Mapping[str, Any]
    bank: Bank
    section: BankSection  # checkpoints/<id>/resources/<type#id>/
    progress: Callable[[int], None] = lambda n: None
    #: ``(bytes read, bytes out)`` of each piece of work as it is done (metrics, notifications): a protect's
    #: bytes read from the volume and stored in the bank, a restore's read from the bank and written to the
    #: target, a verify's read from the bank (out: 0).
    transferred: Callable[[int, int], None] = lambda read, stored: None
    should_stop: Callable[[], bool] = lambda: False
    #: What an earlier, interrupted attempt of this hook saved with ``save_resume_state`` (a run resumed by
    #: another worker reruns the hook that was running): e.g. a snapshot or a half-written volume to clean up.
    resume_state: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Persist a small JSON-able dict for a later attempt (``{}`` clears it).
    save_resume_state: Callable[[dict[str, Any]], None] = lambda state: None
    #: Set by restore hooks: what was created (``{"id": ..., "name": ...}``).
    result: dict[str, Any] = dataclasses.field(default_factory=dict)


class Operation:
    """Four hooks; each may be left as the default no-op.

    Order (``doc/architecture.md``, runs and hooks): a parent's ``on_prepare_begin`` runs before
    its dependents'; dependents' ``on_prepare_finish`` before their parent's;
    ``on_main`` after the resource's own ``on_prepare_finish``; dependents'
    ``on_complete`` before their parent's.  Raising fails the resource and the run.
    """

    def on_prepare_begin(self, ctx: OperationContext) -> None:
        """First hook; runs parents before dependents."""

    def on_prepare_finish(self, ctx: OperationContext) -> None:
        """Runs after every dependent's ``on_prepare_finish``."""

    def on_main(self, ctx: OperationContext) -> None:
        """The work itself."""

    def on_complete(self, ctx: OperationContext) -> None:
        """Last hook; runs dependents before parents."""

    def on_published(self, ctx: OperationContext) -> None:
        """Protect only, after the run: the checkpoint is ``available``.  Best effort, for releasing what the
        checkpoint has superseded (the volume plugin's older base snapshots); an error is logged, never fails
        the checkpoint, and must leave nothing garbage collection cannot reclaim.  Not called when the run
        failed, nor again for a checkpoint published by an earlier attempt."""


class ProtectionPlugin(abc.ABC):
    """Protects, restores, verifies and deletes resources of some types."""

    #: Resource types handled, e.g. ``("OS::Cinder::Volume",)``.
    supported_resource_types: ClassVar[tuple[str, ...]] = ()
    #: JSON schema of this plugin's section in the provider file.
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: Per resource type: plan parameters, restore parameters, saved info, verify parameters.
    options_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    restore_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    saved_info_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    verify_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: Whether ``restore_target`` (another site) is honoured.
    supports_restore_target: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any], env: PluginEnvironment) -> None:
        self.options = dict(options)
        self.env = env

    @abc.abstractmethod
    def get_operation(self, kind: OperationKind, resource: Resource) -> Operation:
        """The operation for ``kind`` on ``resource``."""

    def estimate_size(self, context: RequestContext, resource: Resource) -> int:
        """Bytes a protect of ``resource`` will read (progress reporting).  0 if unknown."""
        return 0

    def saved_size(self, section: BankSection) -> int:
        """Bytes a restore or verify of the saved resource will process.  0 if unknown."""
        return 0

    def check_restore(self, context: RequestContext, resource: Resource,  # noqa: B027 - optional hook
                      section: BankSection, parameters: Mapping[str, Any], per_resource: bool) -> None:
        """Refuse, before a restore starts, what its ``parameters`` for ``resource`` (already valid for
        :attr:`restore_schema`; ``per_resource`` when given under ``type#id``) ask and cannot be done now:
        ``InvalidInput`` or ``Conflict`` whose message starts with the parameter's name.  ``section`` is the
        resource's saved section (read only).  Nothing is held: the restore's hooks check again."""

    def abandon(self, kind: OperationKind, resume_state: Mapping[str, Any]) -> str | None:
        """Clean up after a hook of ``kind`` whose run died (its process was killed) and will never resume,
        from what it saved with ``save_resume_state``; returns what was done or left, for the record's
        reason (say plainly what state an existing restore target was left in).  Crash recovery calls it."""
        return None


class ProtectablePlugin(abc.ABC):
    """Finds resources of one type and what depends on them."""

    resource_type: ClassVar[str] = ""
    #: Types that may be this type's parents in the resource graph.
    parent_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, env: ProtectableEnvironment) -> None:
        self.env = env

    @abc.abstractmethod
    def list_resources(self, context: RequestContext, parameters: Mapping[str, Any]) -> list[Resource]:
        """Every resource of this type visible to the caller, sorted by id."""

    @abc.abstractmethod
    def show_resource(self, context: RequestContext, resource_id: str,
                      parameters: Mapping[str, Any]) -> Resource:
        """Raises ``NotFound``."""

    def show_resource_in(self, context: RequestContext, resource_id: str,
                         backends: Mapping[str, BlockBackend]) -> Resource:
        """The resource as one provider sees it: looked for only in ``backends`` (by name), the block backends
        that provider's protection plugin for this type reads.  Raises ``NotFound``; a backend that cannot be
        asked raises its own error (``BlockUnavailable``).  A plan's resources are checked with it when the
        plan is created or its resources changed.  The default, for types that live in no block backend, is
        :meth:`show_resource` with no parameters."""
        return self.show_resource(context, resource_id, {})

    def get_dependent_resources(self, context: RequestContext, parent: Resource) -> list[Resource]:
        """Resources of this type that depend on ``parent`` (whose type is in ``parent_types``)."""
        return []


@dataclasses.dataclass
class ProtectableEnvironment:
    """Block backends of every enabled provider, by backend name (deduplicated)."""

    block_backends: Callable[[], Mapping[str, BlockBackend]]
