"""Every oslo.config option of Strongroom, grouped, with ``list_opts()`` for the generator.

Nothing is registered at import time: :func:`register_opts` is called by each
program on the ``ConfigOpts`` it owns (tests use private ``ConfigOpts``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from oslo_config import cfg

default_opts = [
    cfg.StrOpt("state_dir", default=os.environ.get("STRONGROOM_STATE_DIR", ".strongroom"), sample_default=".strongroom",
               help="Directory for local state: sqlite database, loopback volumes, fs bank."),
    cfg.StrOpt("providers_dir", default="providers.d",
               help="Directory holding provider files (*.conf), Karbor's format."),
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="<hostname>",
               help="Name of this host, recorded in operation logs and the services table."),
    cfg.StrOpt("auth_strategy", default="noauth", choices=["noauth", "keystone"],
               help="noauth: any token, project from the URL (loopback only). "
                    "keystone: keystonemiddleware validates tokens, oslo.policy decides."),
    cfg.StrOpt("admin_token", secret=True, default=None,
               help="With noauth, requests carrying this X-Auth-Token are admin (at least 16 characters).  "
                    "Unset: a random token is generated at the first start into <state_dir>/admin-token "
                    "(mode 0600) and reused; the strongroom CLI reads it from there."),
    cfg.IntOpt("osapi_max_limit", default=1000, min=1,
               help="Largest number of items a list request returns."),
    cfg.StrOpt("protection_topic", default="strongroom-protection",
               help="RPC topic of the protection service."),
    cfg.FloatOpt("heartbeat_interval", default=10.0, min=0.1,
                 help="Seconds between two heartbeats of each service in the services table."),
    cfg.IntOpt("missed_heartbeats", default=6, min=1,
               help="GET /os-services reports a service 'down' once its last heartbeat is older than "
                    "missed_heartbeats x heartbeat_interval seconds (every node should use the same values)."),
]

api_opts = [
    cfg.HostAddressOpt("bind_host", default="127.0.0.1", help="Address the API listens on."),
    cfg.PortOpt("bind_port", default=8799, help="Port the API listens on (0: any free port)."),
    cfg.IntOpt("threads", default=16, min=1,
               help="Worker threads of the API's WSGI server.  They only run complete requests: the server's "
                    "event loop receives each request (line, headers, body) before a thread takes it."),
    cfg.FloatOpt("header_timeout", default=20.0, min=0.1,
                 help="Seconds a client has to send a request's line and headers, from its first byte; a "
                      "slower one is answered 408 and its connection closed."),
    cfg.FloatOpt("body_timeout", default=60.0, min=0.1,
                 help="Seconds a client has to send a request's body once its headers are in; a slower one "
                      "is answered 408 and its connection closed."),
    cfg.IntOpt("keepalive_timeout", default=30, min=1,
               help="Seconds an idle connection is kept open between two requests."),
    cfg.IntOpt("max_connections", default=256, min=1,
               help="Connections the API holds open at once; further ones wait in the listen queue until "
                    "one closes."),
    cfg.FloatOpt("provider_cache_ttl", default=10.0, min=0,
                 help="Seconds the API remembers that the protection service confirmed a provider id, so that "
                      "listing or showing a provider's checkpoints does not ask it over RPC each time.  An "
                      "unknown id is always asked (a new provider is seen at once); a provider removed from "
                      "every protection service is still taken as known for up to this long.  0: ask each "
                      "time."),
    cfg.IntOpt("max_header_size", default=64 * 1024, min=1024,
               help="Largest accepted request line and headers, in bytes (larger: 431)."),
    cfg.IntOpt("max_request_body_size", default=1024 * 1024, min=1024,
               help="Largest accepted request body, in bytes."),
    cfg.StrOpt("api_paste_config", default=None, sample_default="<the shipped etc/strongroom/api-paste.ini>",
               help="The PasteDeploy file composing the API's middleware pipeline (request id, /healthcheck, "
                    "proxy headers, CORS, body size, authentication).  Unset: the one shipped with Strongroom "
                    "(a checkout's etc/strongroom/api-paste.ini, else <sys.prefix>/share/strongroom/etc/"
                    "strongroom/api-paste.ini)."),
]

database_opts = [
    cfg.StrOpt("connection", secret=True, default=None,
               help="SQLAlchemy URL of the metadata store.  Default: sqlite under state_dir."),
    cfg.BoolOpt("taskflow_persistence", default=True,
                help="Record the flow progress of jobboard jobs in the metadata store (taskflow SQL persistence), "
                     "so that another worker resumes a dead worker's job.  Runs that no jobboard hands out are "
                     "never resumed and are not recorded."),
]

protection_opts = [
    cfg.IntOpt("max_concurrent_operations", default=4, min=1,
               help="Protect/restore/verify/delete runs executing at once in this service."),
    cfg.IntOpt("flow_workers", default=4, min=1,
               help="Threads of the bounded executor that runs independent resources in parallel."),
    cfg.StrOpt("owner_id", default=None,
               help="This service's identity in every bank (its lease leases/<owner_id>, its checkpoints).  "
                    "Default: host, pid and a random suffix for the deployed service; for the all-in-one, "
                    "host and a digest of the state directory (its lock proves a predecessor dead).  "
                    "Two live processes must never share one."),
    cfg.IntOpt("gc_interval", default=300, min=0,
               help="Seconds between garbage collections of zombie checkpoints and unreferenced chunks "
                    "(0: never; strongroom-manage bank gc runs one on demand)."),
    cfg.IntOpt("usage_cache_seconds", default=60, min=0,
               help="Seconds a usage answer (GET /v1/{project_id}/usage: one walk of the bank's checkpoints and "
                    "the project's chunks) is kept and served again before the bank is walked anew (0: every "
                    "call walks it).  Usage may be this much stale."),
    cfg.IntOpt("gc_chunk_grace_period", default=600, min=0,
               help="Unreferenced chunks younger than this (seconds, by the bank's clock) are left to a "
                    "later collection."),
    cfg.IntOpt("bank_retry_attempts", default=5, min=1,
               help="Attempts of a bank request that fails transiently (5xx, timeout, reset) before the "
                    "operation fails."),
    cfg.FloatOpt("bank_retry_initial_delay", default=0.5, min=0,
                 help="Seconds before the first retry of a bank request; doubled for each further retry."),
    cfg.FloatOpt("bank_retry_max_delay", default=10.0, min=0,
                 help="Longest wait between two attempts of a bank request (seconds)."),
]

operationengine_opts: list[cfg.Opt] = [
    cfg.IntOpt("min_interval", default=3600, min=1,
               help="Smallest number of seconds allowed between two fires of a trigger."),
    cfg.IntOpt("min_window", default=60, min=1,
               help="Smallest trigger window (seconds after a fire time during which its run may still start)."),
    cfg.IntOpt("max_window", default=3600, min=1, help="Largest trigger window, in seconds."),
    cfg.IntOpt("default_window", default=900, min=1,
               help="Window of a trigger that names none (clipped into [min_window, max_window])."),
    cfg.FloatOpt("poll_interval", default=5.0, min=0.01,
                 help="Seconds between two looks of an engine at the fires that are due."),
    cfg.IntOpt("plan_ahead", default=600, min=1,
               help="Fires are planned in the database this many seconds ahead of their time."),
    cfg.FloatOpt("claim_timeout", default=60.0, min=0.1,
                 help="A claimed fire whose engine stops renewing its claim for this long is taken over by "
                      "another engine (if its window is still open).  Claims are renewed every third of it."),
    cfg.IntOpt("max_concurrent_runs", default=4, min=1,
               help="Scheduled runs one engine executes at once (it claims no more than that)."),
    cfg.IntOpt("checkpoint_timeout", default=24 * 3600, min=1,
               help="Seconds a run waits for its checkpoint to become available before it fails."),
    cfg.IntOpt("log_retention_days", default=90, min=0,
               help="Finished scheduled-operation logs older than this many days are deleted (0: never)."),
    cfg.IntOpt("suspend_after_identity_failures", default=3, min=0,
               help="Suspend a scheduled operation after this many fires in a row failed because Keystone "
                    "refused its trust (revoked, the owner's role removed, the owner deleted); 0: never. "
                    "Keystone being unreachable does not count."),
]

trustee_opts: list[cfg.Opt] = [
    cfg.StrOpt("auth_url", help="Keystone v3 URL (e.g. http://keystone:5000/v3) used to create and use trusts."),
    cfg.StrOpt("username", help="Service user that scheduled runs act through (the trustee)."),
    cfg.StrOpt("password", secret=True, help="Password of the trustee user."),
    cfg.StrOpt("user_domain_id", default="default", help="Domain of the trustee user."),
]


def bank_retry(conf: cfg.ConfigOpts) -> dict[str, float]:
    """Keyword arguments of :class:`strongroom.bank_plugins.retry.RetryingBank` from ``[protection]``."""
    group = conf.protection
    return {"max_attempts": group.bank_retry_attempts, "initial_delay": group.bank_retry_initial_delay,
            "max_delay": group.bank_retry_max_delay}


coordination_opts = [
    cfg.StrOpt("jobboard_url", secret=True, default=None,
               help="taskflow jobboard that spreads protect, restore, verify and delete jobs over every "
                    "protection worker (e.g. redis://127.0.0.1:6379?db=0).  Unset: each protection service runs "
                    "the jobs it accepts itself (the all-in-one).  Needs [database] taskflow_persistence."),
    cfg.StrOpt("jobboard_namespace", default="strongroom",
               help="Key prefix of this deployment's jobs on the jobboard."),
    cfg.IntOpt("claim_expiry", default=60, min=3,
               help="Seconds a worker's claim on a job lives unless extended (it is extended every third of "
                    "this while the job runs); after a worker dies, its jobs are resumed elsewhere this long "
                    "after its last extension."),
    cfg.FloatOpt("poll_interval", default=1.0, min=0.05,
                 help="Seconds between two looks at the jobboard for unclaimed jobs."),
]

metrics_opts = [
    cfg.HostAddressOpt("bind_host", default="127.0.0.1",
                       help="Address of this program's own metrics port (bind_port)."),
    cfg.PortOpt("bind_port", default=0,
                help="Port on which this program (each protection service, operation engine or API process) "
                     "serves its Prometheus metrics at /metrics; 0: no port of its own (the API still answers "
                     "GET /metrics on its own port).  Give each program on a host its own port."),
    cfg.ListOpt("allowed_source_ranges", default=["127.0.0.0/8", "::1/128"],
                help="Addresses and networks (CIDR) that may scrape the API's GET /metrics, which shows plan, "
                     "project and provider ids without authentication; others get 403.  Empty: everyone.  "
                     "Behind a proxy, the proxy's address is what counts."),
]

notification_opts: list[cfg.Opt] = [
    cfg.IntOpt("send_retries", default=2, min=0,
               help="Attempts to send a notification again when the transport fails ([oslo_messaging_"
                    "notifications] retry of -1, its default, would retry forever and hold up the run that "
                    "sends it); a notification that still cannot be sent is logged and dropped."),
]

quota_opts: list[cfg.Opt] = [
    cfg.IntOpt("plans", default=50, min=-1,
               help="Plans a project may have, unless its own quota or the 'default' quota class says otherwise "
                    "(PUT /v1/{project_id}/quotas/{project_id}, /quota_classes/default); -1: unlimited."),
    cfg.IntOpt("checkpoints", default=-1, min=-1,
               help="Checkpoints (not deleted) a project may have, unless its own quota or the 'default' quota "
                    "class says otherwise; -1: unlimited."),
]

alerts_opts: list[cfg.Opt] = [
    cfg.FloatOpt("evaluation_interval", default=60.0, min=0,
                 help="Seconds between two evaluations of the alert conditions by each protection service "
                      "(0: only when GET /v1/{project_id}/alerts finds none evaluated yet).  doc/alerts.md"),
    cfg.FloatOpt("recovery_point_grace", default=600.0, min=0,
                 help="Seconds past a plan's due scheduled run before the plan is past its recovery point "
                      "(no available checkpoint since the run before)."),
    cfg.FloatOpt("pool_free_percent", default=10.0, min=0, max=100,
                 help="A block backend pool with less free capacity than this (percent of its total, from "
                      "stats()) raises pool_free_capacity_low."),
    cfg.FloatOpt("pool_hysteresis", default=5.0, min=0, max=100,
                 help="A pool's low-capacity alert clears only once its free capacity is this many percent "
                      "above pool_free_percent (no flapping around the threshold)."),
    cfg.FloatOpt("checkpoint_stuck_after", default=6 * 3600.0, min=1,
                 help="Seconds a checkpoint may stay protecting, deleting or copying without a change before "
                      "it is reported stuck."),
    cfg.FloatOpt("cleared_retention", default=3600.0, min=0,
                 help="Seconds a cleared alert is still listed (with cleared_at)."),
]


_GROUPS: dict[str | None, list[cfg.Opt]] = {
    None: default_opts,
    "api": api_opts,
    "database": database_opts,
    "protection": protection_opts,
    "coordination": coordination_opts,
    "operationengine": operationengine_opts,
    "trustee": trustee_opts,
    "quota": quota_opts,
    "metrics": metrics_opts,
    "notifications": notification_opts,
    "alerts": alerts_opts,
}


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """For ``oslo-config-generator --namespace strongroom``."""
    return [("DEFAULT" if group is None else group, list(opts)) for group, opts in _GROUPS.items()]


def register_opts(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """Register every option on ``conf`` (idempotent) and return it."""
    for group, opts in _GROUPS.items():
        _register(conf, group, opts)
    from strongroom import keys  # castellan's [key_manager], with the embedded default backend

    keys.register_opts(conf)
    return conf


def _register(conf: cfg.ConfigOpts, group: str | None, opts: Iterable[cfg.Opt]) -> None:
    for opt in opts:
        try:
            conf.register_opt(opt, group=group)
        except cfg.DuplicateOptError:
            pass


def new_conf(args: list[str] | None = None, default_config_files: list[str] | None = None,
             overrides: dict[str, dict[str, object]] | None = None) -> cfg.ConfigOpts:
    """A private, fully registered and parsed ``ConfigOpts``.

    ``overrides`` maps a group (``"DEFAULT"`` for the default group) to options.
    """
    conf = register_opts(cfg.ConfigOpts())
    conf(args or [], project="strongroom", default_config_files=default_config_files or [])
    for group, values in (overrides or {}).items():
        for name, value in values.items():
            conf.set_override(name, value, group=None if group == "DEFAULT" else group)
    return conf


def state_path(conf: cfg.ConfigOpts, *parts: str) -> str:
    return os.path.join(os.path.abspath(conf.state_dir), *parts)


def database_url(conf: cfg.ConfigOpts) -> str:
    if conf.database.connection:
        return str(conf.database.connection)
    return "sqlite:///" + state_path(conf, "strongroom.sqlite")


def service_down_after(conf: cfg.ConfigOpts) -> float:
    """Seconds without a heartbeat after which a service counts as down."""
    return float(conf.heartbeat_interval) * int(conf.missed_heartbeats)


def quota_defaults(conf: cfg.ConfigOpts) -> dict[str, int]:
    """The ``[quota]`` options: every project's limits where neither its own nor the ``default`` class's are set."""
    return {"plans": int(conf.quota.plans), "checkpoints": int(conf.quota.checkpoints)}
