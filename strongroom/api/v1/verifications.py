"""``/v1/{project_id}/verifications``: like restores (same record, ``kind="verification"``), no target."""

from __future__ import annotations

from strongroom.api.common import ApiRequest, Result
from strongroom.api.v1 import restores


def create(req: ApiRequest) -> Result:
    return restores._start(req, restores.VERIFICATION)


def index(req: ApiRequest) -> Result:
    return restores._index(req, restores.VERIFICATION)


def show(req: ApiRequest, verification_id: str) -> Result:
    return restores._show(req, restores.VERIFICATION, verification_id)
