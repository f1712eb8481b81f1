"""Shipped protectable plugins."""

PROJECT_TYPE = "OS::Keystone::Project"
VOLUME_TYPE = "OS::Cinder::Volume"
