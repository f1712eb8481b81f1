"""The project: the root of every resource graph."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strongroom import exceptions
from strongroom.context import RequestContext
from strongroom.objects.records import Resource
from strongroom.protection.plugin import ProtectablePlugin
from strongroom.protection.protectables import PROJECT_TYPE


class ProjectProtectable(ProtectablePlugin):
    resource_type = PROJECT_TYPE

    def list_resources(self, context: RequestContext, parameters: Mapping[str, Any]) -> list[Resource]:
        project = context.project_id or ""
        return [Resource(id=project, type=PROJECT_TYPE, name=project)]

    def show_resource(self, context: RequestContext, resource_id: str,
                      parameters: Mapping[str, Any]) -> Resource:
        if resource_id != context.project_id and not context.is_admin:
            raise exceptions.NotFound(kind="Project", id=resource_id)
        return Resource(id=resource_id, type=PROJECT_TYPE, name=resource_id)
