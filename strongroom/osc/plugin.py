"""OpenStackClient's hook for Strongroom (``openstack.cli.extension``: ``data_protection``).

OSC builds the keystoneauth session from ``clouds.yaml``, the ``OS_*`` variables and ``--os-*`` options (password,
token, ``admin_token``, or ``--os-auth-type none`` with ``--os-endpoint``) and calls :func:`make_client` the first
time a command asks for ``self.app.client_manager.data_protection``.

Where the API is:

1. ``--os-data-protection-url`` / ``OS_DATA_PROTECTION_URL``, or ``data_protection_endpoint_override`` in
   ``clouds.yaml``;
2. the catalogue's ``data-protection`` endpoint for the chosen region and interface (Karbor registers
   ``http://host:8799/v1/$(project_id)s``; the ``/v1/<project>`` tail is dropped: the client adds it);
3. ``--os-endpoint`` with ``--os-auth-type none`` or ``admin_token``.

The project is the token's (password or token auth), else the endpoint URL's, else
``--os-data-protection-project``/``OS_DATA_PROTECTION_PROJECT`` (embedded noauth, where ``OS_PROJECT_ID``
cannot be used: OSC hands it to the ``none`` auth plugin, which refuses it; default ``default``).  Under
``--os-auth-type none`` against a loopback URL the embedded service's administrator token is sent, as the
standalone ``strongroom`` command does.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from typing import Any

from strongroom.client.client import Client

LOG = logging.getLogger(__name__)

DEFAULT_API_VERSION = "1"
API_NAME = "data_protection"
API_VERSION_OPTION = "os_data_protection_api_version"
API_VERSIONS = {"1": "strongroom.client.client.Client"}
SERVICE_TYPE = "data-protection"

_VERSION_TAIL = re.compile(r"/v1(/[^/]*)?/?$")


class EndpointNotFound(Exception):
    """No data-protection endpoint: neither an option nor the catalogue named one."""


def split_endpoint(url: str) -> tuple[str, str | None]:
    """``http://h:8799/v1/<project>`` -> (``http://h:8799``, ``<project>``); a URL without the tail unchanged."""
    match = _VERSION_TAIL.search(url)
    if not match:
        return url.rstrip("/"), None
    project = (match.group(1) or "").lstrip("/") or None
    return url[:match.start()].rstrip("/"), project


def make_client(instance: Any) -> Client:
    """The :class:`~strongroom.client.client.Client` for ``instance`` (osc-lib's ClientManager)."""
    config = instance.get_configuration()
    url = config.get("data_protection_url") or config.get("data_protection_endpoint_override")
    if not url:
        url = instance.get_endpoint_for_service_type(SERVICE_TYPE, region_name=instance.region_name,
                                                     interface=instance.interface)
    if not url:
        raise EndpointNotFound(
            f"no {SERVICE_TYPE} endpoint: the catalogue has none for region {instance.region_name or '(any)'}; "
            "give --os-data-protection-url (env OS_DATA_PROTECTION_URL)")
    base, url_project = split_endpoint(str(url))
    auth_ref = instance.auth_ref  # None under --os-auth-type none
    token: str | None = None
    project: str | None = None
    if auth_ref is not None:
        token, project = auth_ref.auth_token, auth_ref.project_id
    elif instance.auth is not None and config.get("auth_type") != "none":
        token = instance.auth.get_token(instance.session)  # admin_token: the token given
    if not token:
        from strongroom.client.cli import default_token

        token = default_token(base)
    project = project or url_project or config.get("data_protection_project") or "default"
    LOG.debug("data protection client for %s, project %s", base, project)
    return Client(base, project, token=token, timeout=float(config.get("api_timeout") or 30))


def build_option_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """OSC's global options of this plugin (skipped when another data-protection plugin added them)."""
    known = parser._option_string_actions  # noqa: SLF001 - argparse has no public lookup
    if "--os-data-protection-api-version" not in known:
        parser.add_argument("--os-data-protection-api-version", metavar="<data-protection-api-version>",
                            default=os.environ.get("OS_DATA_PROTECTION_API_VERSION", DEFAULT_API_VERSION),
                            help=f"Data protection API version, default={DEFAULT_API_VERSION} "
                                 "(Env: OS_DATA_PROTECTION_API_VERSION)")
    if "--os-data-protection-url" not in known:
        parser.add_argument("--os-data-protection-url", metavar="<url>",
                            default=os.environ.get("OS_DATA_PROTECTION_URL"),
                            help="The data protection API's URL, instead of the catalogue's "
                                 "(Env: OS_DATA_PROTECTION_URL)")
    if "--os-data-protection-project" not in known:
        parser.add_argument("--os-data-protection-project", metavar="<project-id>",
                            default=os.environ.get("OS_DATA_PROTECTION_PROJECT"),
                            help="The project, where the token names none (--os-auth-type none against the "
                                 "embedded service; default 'default') (Env: OS_DATA_PROTECTION_PROJECT)")
    return parser
