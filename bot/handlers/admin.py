"""(being written)"""

from __future__ import annotations

from aiogram import Router

router = Router(name="admin")
