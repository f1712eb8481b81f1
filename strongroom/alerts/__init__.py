"""Alerts, declared: resource classes with attributes, statistics, conditions and "affects" (``doc/alerts.md``).

:mod:`~strongroom.alerts.model` is the declarative layer, :mod:`~strongroom.alerts.resources` what Strongroom
declares, :mod:`~strongroom.alerts.collect` observes, :mod:`~strongroom.alerts.engine` judges and carries
alerts along ``affects``, :mod:`~strongroom.alerts.service` runs it in the protection service.
"""
