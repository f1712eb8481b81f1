"""``strongroom-status upgrade check``: is this deployment ready to run (or to run the new code)?

oslo.upgradecheck's command (as ``nova-status``, ``cinder-status``): each check answers success, warning or
failure with details, and the exit code is the worst of them (0 success, 1 warning, 2 failure).  Run it with
the services' configuration (``--config-file``), before restarting them.

* **Database schema**: the metadata store is at the newest migration this code ships (``strongroom-manage db
  sync`` upgrades it); a failure names the revision it is at.
* **Provider files**: every ``*.conf`` of ``providers_dir`` passes the validation a protection service does at
  start-up; a failure names the file, section and key.
* **Banks reachable**: one listing of at most one key in each enabled provider's bank, without retries, given
  ``BANK_TIMEOUT`` seconds; a failure names the bank and its provider.
* **Policy file**: ``[oslo_policy] policy_file``, when there is one, parses; every rule it sets refers to
  defined rules (else failure); rules it sets that Strongroom does not know, or deprecated ones, or checks it
  keeps at a deprecated default, are warnings naming them.

The checks read the configuration, the database and the banks; they write nothing.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from oslo_config import cfg
from oslo_upgradecheck import upgradecheck

#: Seconds one bank is given to answer its listing.
BANK_TIMEOUT = 15.0


def _result(code: upgradecheck.Code, details: str) -> upgradecheck.Result:
    return upgradecheck.Result(code, details)


class Checks(upgradecheck.UpgradeCommands):
    def __init__(self, conf: cfg.ConfigOpts, bank_timeout: float = BANK_TIMEOUT) -> None:
        self.conf = conf
        self.bank_timeout = bank_timeout

    # -- the database ------------------------------------------------------

    def _check_schema(self) -> upgradecheck.Result:
        import sqlalchemy as sa

        from strongroom import config
        from strongroom.db import migration

        url = config.database_url(self.conf)
        engine = sa.create_engine(url)
        try:
            current = migration.current(engine)
        except sa.exc.SQLAlchemyError as err:
            where = sa.engine.make_url(url).render_as_string(hide_password=True)
            return _result(upgradecheck.Code.FAILURE, f"the database {where} cannot be read: "
                                                      f"{type(err).__name__}: {err.orig or err}"
                           if isinstance(err, sa.exc.DBAPIError) else f"the database {where} cannot be read: {err}")
        finally:
            engine.dispose()
        head = migration.head()
        if current is None:
            return _result(upgradecheck.Code.FAILURE, f"the database has no schema (head is {head}): run "
                                                      "'strongroom-manage db sync'")
        if current != head:
            return _result(upgradecheck.Code.FAILURE, f"the database schema is at revision {current}, not at "
                                                      f"head {head}: run 'strongroom-manage db sync'")
        return _result(upgradecheck.Code.SUCCESS, f"the database schema is at head {head}")

    # -- providers and banks ----------------------------------------------

    def _registry(self) -> Any:
        from strongroom import keys
        from strongroom.protection.providers import ProviderRegistry
        from strongroom.service import resolve_providers_dir

        # One attempt per bank request: the bank check answers for itself, within its timeout.
        no_retry = {"max_attempts": 1, "initial_delay": 0.0, "max_delay": 0.0}
        return ProviderRegistry.load(resolve_providers_dir(self.conf), self.conf.state_dir, bank_retry=no_retry,
                                     kek=keys.kek_source(self.conf))

    def _check_providers(self) -> upgradecheck.Result:
        from strongroom import exceptions
        from strongroom.service import resolve_providers_dir

        try:
            registry = self._registry()
        except exceptions.StrongroomError as err:
            return _result(upgradecheck.Code.FAILURE, str(err))
        try:
            names = [f"{p.name} ({p.id})" for p in registry.providers()]
        finally:
            registry.close()
        if not names:
            return _result(upgradecheck.Code.WARNING, f"no provider is enabled in {resolve_providers_dir(self.conf)}")
        return _result(upgradecheck.Code.SUCCESS, f"enabled providers: {', '.join(names)}")

    def _check_banks(self) -> upgradecheck.Result:
        from strongroom import exceptions

        try:
            registry = self._registry()
        except exceptions.StrongroomError as err:
            return _result(upgradecheck.Code.FAILURE, f"the provider files are invalid: {err}")
        problems: list[str] = []
        reached: list[str] = []
        try:
            for provider in registry.providers():
                problem = self._reach(provider)
                if problem is None:
                    reached.append(provider.bank_description)
                else:
                    problems.append(f"{provider.bank_description}: {problem}")
        finally:
            registry.close()
        if problems:
            return _result(upgradecheck.Code.FAILURE, "; ".join(problems))
        return _result(upgradecheck.Code.SUCCESS, f"reached {', '.join(reached) or 'no bank'}")

    def _reach(self, provider: Any) -> str | None:
        """None if the bank answered one listing in time, else why not (secrets masked by the bank's errors)."""
        from strongroom import exceptions

        outcome: list[BaseException | None] = []

        def probe() -> None:
            try:
                provider.bank.list("", limit=1)
                outcome.append(None)
            except (exceptions.StrongroomError, OSError) as err:  # reported: the next bank is still checked
                outcome.append(err)

        thread = threading.Thread(target=probe, name="sr-status-bank", daemon=True)
        thread.start()
        thread.join(self.bank_timeout)
        if thread.is_alive():
            return f"did not answer within {self.bank_timeout:g} s"
        if not outcome:
            return "failed (see the log above)"
        err = outcome[0]
        return None if err is None else f"unreachable ({type(err).__name__}: {err})"

    # -- policy -------------------------------------------------------------

    def _check_policy(self) -> upgradecheck.Result:
        import yaml
        from oslo_policy import policy

        from strongroom.api.policy import get_enforcer

        enforcer = get_enforcer(self.conf)
        path = self.conf.find_file(self.conf.oslo_policy.policy_file)
        try:
            enforcer.load_rules(force_reload=True)
        except (yaml.YAMLError, ValueError, OSError) as err:  # what oslo.policy's parser raises
            return _result(upgradecheck.Code.FAILURE, f"the policy file {path} cannot be loaded: {err}")
        if not enforcer.file_rules:
            return _result(upgradecheck.Code.SUCCESS, "no policy file overrides the defaults")
        if not enforcer.check_rules(raise_on_violation=False):
            try:
                enforcer.check_rules(raise_on_violation=True)
            except policy.InvalidDefinitionError as err:
                return _result(upgradecheck.Code.FAILURE, f"the policy file {path} refers to undefined or "
                                                          f"cyclical rules: {err}")
        registered = enforcer.registered_rules
        renamed = {d.deprecated_rule.name: name for name, d in registered.items()
                   if d.deprecated_rule is not None and d.deprecated_rule.name != name}
        warnings = []
        for name, rule in sorted(enforcer.file_rules.items()):
            default = registered.get(name)
            if name in renamed:
                warnings.append(f"{name!r} is deprecated: it is now {renamed[name]!r}")
            elif default is None:
                warnings.append(f"{name!r} is not a Strongroom rule")
            elif default.deprecated_for_removal:
                warnings.append(f"{name!r} is deprecated for removal")
            elif default.deprecated_rule is not None and rule.check_str == default.deprecated_rule.check_str:
                warnings.append(f"{name!r} keeps its deprecated default {rule.check_str!r} "
                                f"(the new default is {default.check_str!r})")
        if warnings:
            return _result(upgradecheck.Code.WARNING, f"the policy file {path}: " + "; ".join(warnings))
        return _result(upgradecheck.Code.SUCCESS, f"the policy file {path} sets {len(enforcer.file_rules)} "
                                                  "known rule(s)")

    _upgrade_checks = (
        ("Database schema", _check_schema),
        ("Provider files", _check_providers),
        ("Banks reachable", _check_banks),
        ("Policy file", _check_policy),
    )


def main(argv: list[str] | None = None) -> int:
    from strongroom import config

    conf = config.register_opts(cfg.ConfigOpts())
    return upgradecheck.main(conf, "strongroom", Checks(conf), argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
