"""Persistence: tables, the async engine, hot-path queries and the unit of work.

Imports nothing of ours; `cache/` and `bot/` build on it.
"""

from db.engine import Database, DatabaseSettings
from db.uow import UnitOfWork

__all__ = ["Database", "DatabaseSettings", "UnitOfWork"]
