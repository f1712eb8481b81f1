"""Banks: flat, binary-safe key/value stores that hold checkpoints.

Layering: nothing in this package imports the service layers (protection, api,
db, operationengine).  Contract-checked by import-linter.
"""

from strongroom.bank_plugins.bank import Bank, BankSection
from strongroom.bank_plugins.base import BankPlugin, ObjectInfo

__all__ = ["Bank", "BankPlugin", "BankSection", "ObjectInfo"]
