"""Selects oslo.service's threading backend before any test imports oslo.messaging."""

from strongroom import backend

backend.init()
