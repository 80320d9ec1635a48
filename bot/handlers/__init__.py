"""One router per feature, assembled in the order their filters must be tried."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import admin, deals, errors, fallback, start, wallet, wizard


def build_router() -> Router:
    root = Router(name="escrow")
    root.include_routers(
        errors.router,
        start.router,
        deals.router,
        wizard.router,
        wallet.router,
        admin.router,
        # the catch-all comes last
        fallback.router,
    )
    return root
