"""Who a scheduled run acts as: the owner of the scheduled operation.

- ``noauth``: the owning project (and the user id recorded when the operation was created).
- ``keystone``: a Keystone trust.  When a user creates a scheduled operation, the API creates a trust from
  that user (trustor, with the token of the request) to Strongroom's service user (``[trustee]``), for the
  operation's project and the user's roles (those of the token, implied ones included), with impersonation;
  the trust id is stored with the operation.  Each run authenticates as the trustee scoped to the trust (one
  token request, no retry, no token cached between runs) and gets a token that acts as the user.
  Deleting the operation deletes its trust.

When Keystone refuses the trust (HTTP 401, 403 or 404: revoked or deleted, the user's role on the project
taken away, the user deleted or disabled) the run fails with :class:`TrustRefused`, whose message names the
operation and says which of these it is; the engine counts such fires and suspends the operation after
``[operationengine] suspend_after_identity_failures`` of them in a row (``doc/scheduling.md``).  Keystone
being unreachable or failing (5xx) is an :class:`IdentityError` too, but a passing one: the fire fails and the
count is left alone.  No message carries a token or a password.

Built on keystoneauth1 (``v3.Password`` with ``trust_id``).  Tested against a real Keystone
(``tests/functional/test_keystone_trusts.py``, :mod:`tests.servers.keystone`) and, for the unit tests, a
small fake Keystone HTTP server (``tests/servers/fake_keystone.py``).
"""

from __future__ import annotations

import abc
import logging
import threading
from typing import Any

from oslo_config import cfg

from strongroom import exceptions
from strongroom.context import RequestContext, get_context
from strongroom.objects.scheduling import ScheduledOperation

LOG = logging.getLogger(__name__)


class IdentityError(exceptions.Forbidden):
    """Policy does not allow this operation: {reason}"""


class TrustRefused(IdentityError):
    """Keystone refused the trust a scheduled run acts through: {reason}"""


class RunIdentity(abc.ABC):
    """Creates, uses and deletes what lets the engine act as an operation's owner."""

    @abc.abstractmethod
    def create_delegation(self, ctx: RequestContext, user_token: str | None) -> str | None:
        """Called by the API when ``ctx``'s user creates an operation; returns the trust id (or None)."""

    @abc.abstractmethod
    def delete_delegation(self, trust_id: str | None, user_token: str | None) -> None:
        """Called by the API when the operation is deleted.  Best effort: never raises."""

    @abc.abstractmethod
    def context_for(self, op: ScheduledOperation) -> RequestContext:
        """The context a run of ``op`` acts with; :class:`IdentityError` when it may no longer act."""


class NoAuthIdentity(RunIdentity):
    """``auth_strategy = noauth``: a member of the owning project."""

    def create_delegation(self, ctx: RequestContext, user_token: str | None) -> str | None:
        return None

    def delete_delegation(self, trust_id: str | None, user_token: str | None) -> None:
        return None

    def context_for(self, op: ScheduledOperation) -> RequestContext:
        return get_context(op.project_id, user_id=op.user_id, roles=["member"])


class KeystoneTrusts(RunIdentity):
    """``auth_strategy = keystone``: Keystone trusts from each owner to the ``[trustee]`` service user."""

    def __init__(self, auth_url: str, username: str, password: str, user_domain_id: str = "default",
                 timeout: float = 30.0) -> None:
        if not (auth_url and username and password):
            raise exceptions.ConfigError(
                reason="auth_strategy = keystone needs [trustee] auth_url, username and password")
        self.auth_url = auth_url.rstrip("/")
        self._username = username
        self._password = password
        self._user_domain_id = user_domain_id
        self._timeout = timeout
        self._lock = threading.Lock()
        self._trustee_user_id: str | None = None
        self._trustee: Any = None

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> KeystoneTrusts:
        t = conf.trustee
        return cls(t.auth_url or "", t.username or "", t.password or "", t.user_domain_id or "default")

    def _session(self, auth: Any = None) -> Any:
        from keystoneauth1 import session

        return session.Session(auth=auth, timeout=self._timeout)

    def _password_auth(self, trust_id: str | None = None) -> Any:
        from keystoneauth1.identity import v3

        return v3.Password(auth_url=self.auth_url, username=self._username, password=self._password,
                           user_domain_id=self._user_domain_id, trust_id=trust_id)

    def _trustee_session(self) -> Any:
        """A session of the trustee itself (unscoped), kept: keystoneauth reuses its token until it is about
        to expire, so asking about a trust costs no token request each time."""
        with self._lock:
            if self._trustee is None:
                self._trustee = self._session(self._password_auth())
            return self._trustee

    def trustee_user_id(self) -> str:
        """The trustee's user id (asked once); :class:`~strongroom.exceptions.ServiceUnavailable` when Keystone
        refuses the ``[trustee]`` credentials or cannot be reached: the deployment's fault, not the caller's."""
        from keystoneauth1 import exceptions as ks_exc

        sess = self._trustee_session()
        with self._lock:
            if self._trustee_user_id is None:
                try:
                    self._trustee_user_id = str(sess.get_user_id())
                except ks_exc.HttpError as err:
                    raise exceptions.ServiceUnavailable(
                        what="scheduling", reason=f"Keystone refuses the [trustee] user {self._username} "
                                                  f"({_keystone_says(err)})") from None
                except ks_exc.ClientException as err:
                    raise exceptions.ServiceUnavailable(
                        what="scheduling", reason=f"Keystone could not be asked for the [trustee] user "
                                                  f"{self._username}: {type(err).__name__}: {err}") from None
            return self._trustee_user_id

    def create_delegation(self, ctx: RequestContext, user_token: str | None) -> str | None:
        from keystoneauth1 import exceptions as ks_exc

        if not user_token:
            raise IdentityError(reason="creating a scheduled operation needs the user's token (keystone)")
        body = {"trust": {
            "trustor_user_id": ctx.user_id, "trustee_user_id": self.trustee_user_id(),
            "project_id": ctx.project_id, "impersonation": True,
            "roles": [{"name": role} for role in ctx.roles],
        }}
        try:
            resp = self._session().post(f"{self.auth_url}/OS-TRUST/trusts", json=body,
                                        headers={"X-Auth-Token": user_token}, authenticated=False)
        except ks_exc.HttpError as err:
            raise IdentityError(reason=f"Keystone refused a trust for user {ctx.user_id} in project "
                                       f"{ctx.project_id}: {err}") from None
        except ks_exc.ClientException as err:
            raise exceptions.ServiceUnavailable(
                what="scheduling", reason=f"Keystone could not be asked for a trust: {type(err).__name__}: {err}") \
                from None
        return str(resp.json()["trust"]["id"])

    def delete_delegation(self, trust_id: str | None, user_token: str | None) -> None:
        if not trust_id:
            return
        try:
            headers = {"X-Auth-Token": user_token} if user_token else {}
            sess = self._session() if user_token else self._session(self._password_auth())
            sess.delete(f"{self.auth_url}/OS-TRUST/trusts/{trust_id}", headers=headers,
                        authenticated=not user_token)
        except Exception as err:  # noqa: BLE001 - deleting the operation matters more than its trust
            LOG.warning("could not delete Keystone trust %s: %s", trust_id, err)

    def context_for(self, op: ScheduledOperation) -> RequestContext:
        from keystoneauth1 import exceptions as ks_exc

        if not op.trust_id:
            raise TrustRefused(reason=f"scheduled operation {op.id} has no Keystone trust; recreate it")
        # A fresh token for every run (runs are at least min_interval apart): a revoked trust, a deleted
        # user or a removed role is noticed at the next run, not when a cached token expires.
        auth = self._password_auth(op.trust_id)
        try:
            access = auth.get_access(self._session(auth))
        except ks_exc.HttpError as err:
            if err.http_status in (401, 403, 404):
                raise self._refusal(op, err) from None
            raise IdentityError(reason=f"Keystone failed to answer for the trust of scheduled operation "
                                       f"{op.id}: {_keystone_says(err)}") from None
        except ks_exc.ClientException as err:
            raise IdentityError(reason=f"Keystone could not be asked for the trust of scheduled operation "
                                       f"{op.id}: {type(err).__name__}: {err}") from None
        if access.project_id != op.project_id:
            raise TrustRefused(reason=f"the trust of scheduled operation {op.id} is for project "
                                      f"{access.project_id}, not {op.project_id}")
        ctx = get_context(op.project_id, user_id=access.user_id, roles=list(access.role_names))
        ctx.auth_token = access.auth_token
        return ctx

    def _refusal(self, op: ScheduledOperation, err: Any) -> IdentityError:
        """What Keystone refusing ``op``'s trust (401, 403 or 404) means.  Keystone (30) answers a bare 401 to
        a revoked or deleted trust and to a wrong trustee password alike, and a bare 403 to a trustor who lost
        a delegated role or was disabled, so the trustee asks about the trust itself (``GET
        /v3/OS-TRUST/trusts/{id}``, which a trustee may; its own token is kept, so this costs no token)."""
        from keystoneauth1 import exceptions as ks_exc

        said = _keystone_says(err)
        whose = f"user {op.user_id}" if op.user_id else "its owner"
        head = f"the Keystone trust {op.trust_id} of scheduled operation {op.id} no longer works"
        try:
            answer = self._trustee_session().get(f"{self.auth_url}/OS-TRUST/trusts/{op.trust_id}",
                                                 raise_exc=False)
        except ks_exc.HttpError as own:  # the trustee's own credentials: the deployment's, not the trust's
            return IdentityError(reason=f"Keystone refuses the [trustee] user {self._username} "
                                        f"({_keystone_says(own)}); scheduled operation {op.id} could not run")
        except ks_exc.ClientException as own:
            return IdentityError(reason=f"Keystone could not be asked about the trust of scheduled operation "
                                        f"{op.id}: {type(own).__name__}: {own}")
        if answer.status_code == 404:
            return TrustRefused(reason=f"{head}: it was revoked or deleted (by {whose} or an administrator, or "
                                       f"with its user) (Keystone: {said})")
        if answer.status_code != 200:
            return TrustRefused(reason=f"{head} (Keystone: {said}; the trust: HTTP {answer.status_code})")
        roles = ", ".join(sorted(str(r.get("name")) for r in answer.json().get("trust", {}).get("roles", [])))
        if err.http_status == 403:
            return TrustRefused(reason=f"{head}: {whose} no longer holds a role the trust delegates on project "
                                       f"{op.project_id} ({roles}): a role was removed, or the user was disabled "
                                       f"(Keystone: {said})")
        return TrustRefused(reason=f"{head}: Keystone keeps the trust but refuses it ({whose} or project "
                                   f"{op.project_id} disabled?) (Keystone: {said})")


def _keystone_says(err: Any) -> str:
    """Keystone's own message and status, without the request id keystoneauth adds."""
    message = str(getattr(err, "message", "") or type(err).__name__).split(" (HTTP ")[0].strip()
    status = getattr(err, "http_status", None)
    return f"{message} (HTTP {status})" if status else message


def from_conf(conf: cfg.ConfigOpts) -> RunIdentity:
    """The identity provider for ``auth_strategy``."""
    if conf.auth_strategy == "keystone":
        return KeystoneTrusts.from_conf(conf)
    return NoAuthIdentity()
