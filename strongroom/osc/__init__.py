"""The ``openstack data protection ...`` commands: an OpenStackClient plugin on osc-lib/cliff.

:mod:`strongroom.osc.plugin` is the ``openstack.cli.extension`` entry point (``data_protection``); the commands
live in :mod:`strongroom.osc.v1` (entry points ``openstack.data_protection.v1``).  They call the API through
:class:`strongroom.client.client.Client`, given the keystoneauth session's token and the endpoint of the
``data-protection`` service from the catalogue, or ``--os-data-protection-url``.
"""
