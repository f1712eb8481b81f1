"""The bank layout: the one place where Strongroom's bank keys are built and parsed.

Every key a Strongroom service reads or writes in a bank is built here (velero's
layout object owning the prefixes of its ``BackupStore``); nobody else spells a
key fragment.  :data:`PATTERNS` declares each kind of key, so that a test can
replay protect, restore, verify, delete and garbage collection on a recording
bank and fail on any key the layout does not declare.  ``doc/bank-layout.md``
describes the same tree for readers::

    checkpoints/<cid>/index.json                          the checkpoint's index (status, owner, plan, graph)
    checkpoints/<cid>/reclaimed                           written by garbage collection before it reclaims
    checkpoints/<cid>/resources/<type#id>/metadata.json   a resource's saved information
    checkpoints/<cid>/resources/<type#id>/resume.json     a hook's resume state (a job resumed elsewhere)
    checkpoints/<cid>/resources/<type#id>/data/manifest.json      a volume manifest's header, written last
    checkpoints/<cid>/resources/<type#id>/data/parts/<8 digits>   its parts
    projects/<project>/chunks/<2 hex>/<hash>              content-addressed data chunks (dedup per project)
    indices/by-plan/<plan>/<ts>@<cid>                     listings without scans, written after commit
    indices/by-date/<YYYY-MM-DD>/<ts>@<cid>
    indices/by-provider/<provider>/<ts>@<cid>
    indices/active/<owner>/<cid>                          checkpoints a writer is still working on
    leases/<owner>                                        one lease per protection service
    clock/<owner>                                         probe objects that tell a bank's time
    gc/sweeping/<project>/<owner>                         a chunk sweep of the project is in progress
    keys/kek                                              which key-encryption key wraps new data keys
    keys/<project>/<key id>                               a project's data key, wrapped by a KEK

It lives with the storage layer so that both the protection service and the
lease code (:mod:`strongroom.bank_plugins.lease`) build keys from it without an
import cycle.  It imports nothing of the service layers.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re

#: Manifest-relative keys (inside a ``.../data`` section): the header, written last, and the parts.
MANIFEST_HEADER = "manifest.json"
MANIFEST_PARTS = "parts/"
#: Resource-relative names (inside ``checkpoints/<cid>/resources/<type#id>``).
RESOURCE_DATA = "data"
RESOURCE_METADATA = "metadata.json"
RESUME_STATE = "resume.json"
#: A character above every one a key segment of the layout holds (hex digests, ids of a safe charset):
#: listing past ``<prefix>/~`` skips a whole subtree.  ASCII: moto 5.2's S3 answers 500 to a ``StartAfter``
#: holding U+FFFF, and an S3-compatible server need not accept more than real S3 documents.
PAST_SEGMENT = "~"


@dataclasses.dataclass(frozen=True)
class KeyPattern:
    """One kind of key the layout declares: ``name`` for readers, ``regex`` matches the whole key."""

    name: str
    regex: re.Pattern[str]

    def matches(self, key: str) -> bool:
        return self.regex.fullmatch(key) is not None


_SEG = r"[^/]+"
_CID = _SEG
_RES = rf"checkpoints/{_CID}/resources/{_SEG}"

PATTERNS: tuple[KeyPattern, ...] = tuple(KeyPattern(name, re.compile(regex)) for name, regex in (
    ("checkpoint index", rf"checkpoints/{_CID}/index\.json"),
    ("reclaim marker", rf"checkpoints/{_CID}/reclaimed"),
    ("resource metadata", rf"{_RES}/metadata\.json"),
    ("resume state", rf"{_RES}/resume\.json"),
    ("manifest header", rf"{_RES}/data/manifest\.json"),
    ("manifest part", rf"{_RES}/data/parts/\d{{8}}"),
    ("chunk", rf"projects/{_SEG}/chunks/[0-9a-f]{{2}}/[0-9a-f]{{2,}}"),
    ("plan listing", rf"indices/by-plan/{_SEG}/\d{{8}}T\d{{6}}\.\d{{6}}Z@{_CID}"),
    ("date listing", rf"indices/by-date/\d{{4}}-\d{{2}}-\d{{2}}/\d{{8}}T\d{{6}}\.\d{{6}}Z@{_CID}"),
    ("provider listing", rf"indices/by-provider/{_SEG}/\d{{8}}T\d{{6}}\.\d{{6}}Z@{_CID}"),
    ("active marker", rf"indices/active/{_SEG}/{_CID}"),
    ("lease", rf"leases/{_SEG}"),
    ("clock probe", rf"clock/{_SEG}"),
    ("sweep marker", rf"gc/sweeping/{_SEG}/{_SEG}"),
    ("current key-encryption key", r"keys/kek"),
    ("wrapped data key", rf"keys/{_SEG}/[0-9a-f]{{16}}"),
))

#: Prefixes that are listed whole (scans) rather than read key by key.
LISTED_PREFIXES = ("checkpoints/", "projects/", "indices/", "leases/", "clock/", "gc/sweeping/", "keys/")


def classify(key: str) -> str | None:
    """The name of the declared pattern ``key`` matches, or None for a key the layout does not know."""
    for pattern in PATTERNS:
        if pattern.matches(key):
            return pattern.name
    return None


class BankLayout:
    """Builds and parses every key of a Strongroom bank (see the module docstring for the tree)."""

    CHECKPOINTS = "checkpoints/"
    PROJECTS = "projects/"
    ACTIVE = "indices/active/"
    LEASES = "leases/"
    CLOCK = "clock/"
    SWEEPS = "gc/sweeping/"
    KEYS = "keys/"
    CURRENT_KEK = "keys/kek"
    INDEX = "index.json"
    #: Manifests that reference chunks end so: ``checkpoints/<cid>/resources/<type#id>/data/manifest.json``.
    MANIFEST_SUFFIX = f"/{RESOURCE_DATA}/{MANIFEST_HEADER}"

    # -- checkpoints -----------------------------------------------------------

    @classmethod
    def checkpoint_prefix(cls, checkpoint_id: str) -> str:
        return f"{cls.CHECKPOINTS}{checkpoint_id}/"

    @classmethod
    def index_key(cls, checkpoint_id: str) -> str:
        return f"{cls.checkpoint_prefix(checkpoint_id)}{cls.INDEX}"

    @classmethod
    def reclaimed_key(cls, checkpoint_id: str) -> str:
        return f"{cls.checkpoint_prefix(checkpoint_id)}reclaimed"

    @classmethod
    def resources_prefix(cls, checkpoint_id: str) -> str:
        return f"{cls.checkpoint_prefix(checkpoint_id)}resources"

    @classmethod
    def resource_prefix(cls, checkpoint_id: str, resource_key: str) -> str:
        return f"{cls.resources_prefix(checkpoint_id)}/{resource_key}"

    @classmethod
    def checkpoint_of_index(cls, key: str) -> str | None:
        """``checkpoints/<cid>/index.json`` -> ``<cid>``; None for any other key."""
        parts = key.split("/")
        if len(parts) == 3 and f"{parts[0]}/" == cls.CHECKPOINTS and parts[2] == cls.INDEX and parts[1]:
            return parts[1]
        return None

    @staticmethod
    def data_section_of(resource_relative_key: str) -> str | None:
        """``<type#id>/data/...`` (a key inside a checkpoint's ``resources`` section) -> ``<type#id>/data``."""
        head, sep, _ = resource_relative_key.partition(f"/{RESOURCE_DATA}/")
        return f"{head}/{RESOURCE_DATA}" if sep else None

    @classmethod
    def is_manifest_header(cls, key: str) -> bool:
        return key.endswith(cls.MANIFEST_SUFFIX)

    # -- manifests (keys inside a manifest's own section) ------------------------

    @staticmethod
    def manifest_part_key(index: int) -> str:
        return f"{MANIFEST_PARTS}{index:08d}"

    # -- chunks ----------------------------------------------------------------

    @classmethod
    def chunks_prefix(cls, project_id: str) -> str:
        return f"{cls.PROJECTS}{project_id}/chunks"

    @classmethod
    def past_project(cls, project_id: str) -> str:
        """A listing marker past every key of ``project_id`` (to step from project to project)."""
        return f"{cls.PROJECTS}{project_id}/{PAST_SEGMENT}"

    @classmethod
    def project_of(cls, key: str) -> str:
        """``projects/<project>/...`` -> ``<project>``."""
        return key[len(cls.PROJECTS):].split("/", 1)[0]

    @staticmethod
    def chunk_key(digest: str) -> str:
        """The key of a chunk inside its project's chunk section: ``<2 hex>/<digest>``."""
        return f"{digest[:2]}/{digest}"

    @staticmethod
    def digest_of_chunk(chunk_relative_key: str) -> str | None:
        """``<2 hex>/<digest>`` -> ``<digest>`` when the prefix matches the digest; None otherwise."""
        prefix, _, digest = chunk_relative_key.partition("/")
        return digest if digest and digest[:2] == prefix else None

    # -- listings ----------------------------------------------------------------

    @staticmethod
    def sortable(ts: _dt.datetime) -> str:
        return ts.astimezone(_dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")

    @classmethod
    def listing_keys(cls, checkpoint_id: str, created_at: _dt.datetime, provider_id: str,
                     plan_id: str | None) -> list[str]:
        """The listing entries of a published checkpoint, in write order (plan, date, provider)."""
        stamp = f"{cls.sortable(created_at)}@{checkpoint_id}"
        keys = [f"indices/by-date/{created_at.astimezone(_dt.UTC):%Y-%m-%d}/{stamp}",
                f"indices/by-provider/{provider_id}/{stamp}"]
        if plan_id:
            keys.insert(0, f"indices/by-plan/{plan_id}/{stamp}")
        return keys

    # -- active markers ------------------------------------------------------------

    @classmethod
    def active_key(cls, owner_id: str, checkpoint_id: str) -> str:
        return f"{cls.ACTIVE}{owner_id}/{checkpoint_id}"

    @classmethod
    def parse_active_key(cls, key: str) -> tuple[str, str] | None:
        """``indices/active/<owner>/<cid>`` -> ``(owner, cid)``; None for anything else."""
        if not key.startswith(cls.ACTIVE):
            return None
        owner, _, checkpoint_id = key[len(cls.ACTIVE):].partition("/")
        if not owner or not checkpoint_id or "/" in checkpoint_id:
            return None
        return owner, checkpoint_id

    # -- leases and clock probes -------------------------------------------------

    @classmethod
    def lease_key(cls, owner_id: str) -> str:
        return f"{cls.LEASES}{owner_id}"

    @classmethod
    def owner_of_lease(cls, key: str) -> str | None:
        """``leases/<owner>`` -> ``<owner>``; None for anything else."""
        if not key.startswith(cls.LEASES):
            return None
        owner = key[len(cls.LEASES):]
        return owner if owner and "/" not in owner else None

    @classmethod
    def clock_probe_key(cls, owner_id: str) -> str:
        return f"{cls.CLOCK}{owner_id}"

    # -- chunk sweeps --------------------------------------------------------------

    @classmethod
    def sweep_prefix(cls, project_id: str) -> str:
        return f"{cls.SWEEPS}{project_id}/"

    @classmethod
    def sweep_key(cls, project_id: str, owner_id: str) -> str:
        return cls.sweep_prefix(project_id) + owner_id

    # -- wrapped data keys ---------------------------------------------------------

    @classmethod
    def keys_prefix(cls, project_id: str) -> str:
        return f"{cls.KEYS}{project_id}/"

    @classmethod
    def wrapped_key(cls, project_id: str, key_id: str) -> str:
        return f"{cls.keys_prefix(project_id)}{key_id}"

    @classmethod
    def parse_wrapped_key(cls, key: str) -> tuple[str, str] | None:
        """``keys/<project>/<key id>`` -> ``(project, key id)``; None for anything else."""
        if not key.startswith(cls.KEYS):
            return None
        project, _, key_id = key[len(cls.KEYS):].partition("/")
        if not project or not key_id or "/" in key_id:
            return None
        return project, key_id
