"""The v1 commands of ``openstack data protection`` (python-karborclient's command set)."""
