"""Volumes of the block backends that enabled providers use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strongroom import exceptions
from strongroom.block import BlockBackend, Volume
from strongroom.context import RequestContext
from strongroom.objects.records import Resource
from strongroom.protection.plugin import ProtectablePlugin
from strongroom.protection.protectables import PROJECT_TYPE, VOLUME_TYPE


def volume_resource(backend_name: str, volume: Volume) -> Resource:
    return Resource(id=volume.id, type=VOLUME_TYPE, name=volume.name,
                    extra_info={"backend": backend_name, "size": volume.size})


class VolumeProtectable(ProtectablePlugin):
    resource_type = VOLUME_TYPE
    parent_types = (PROJECT_TYPE,)

    def _backends(self, parameters: Mapping[str, Any]) -> Mapping[str, BlockBackend]:
        backends = self.env.block_backends()
        wanted = parameters.get("backend")
        if wanted:
            if wanted not in backends:
                raise exceptions.InvalidInput(reason=f"parameters.backend: unknown block backend {wanted!r}")
            return {wanted: backends[wanted]}
        return backends

    def list_resources(self, context: RequestContext, parameters: Mapping[str, Any]) -> list[Resource]:
        out = [volume_resource(name, v) for name, backend in self._backends(parameters).items()
               for v in backend.for_project(context.project_id, context.auth_token).list_volumes()]
        return sorted(out, key=lambda r: r.id)

    def show_resource(self, context: RequestContext, resource_id: str,
                      parameters: Mapping[str, Any]) -> Resource:
        return self.show_resource_in(context, resource_id, self._backends(parameters))

    def show_resource_in(self, context: RequestContext, resource_id: str,
                         backends: Mapping[str, BlockBackend]) -> Resource:
        for name, backend in backends.items():
            try:
                scoped = backend.for_project(context.project_id, context.auth_token)
                return volume_resource(name, scoped.get_volume(resource_id))
            except exceptions.VolumeNotFound:
                continue
        raise exceptions.NotFound(kind="Volume", id=resource_id)

    def get_dependent_resources(self, context: RequestContext, parent: Resource) -> list[Resource]:
        if parent.type == PROJECT_TYPE:
            return self.list_resources(context, {})
        return []
