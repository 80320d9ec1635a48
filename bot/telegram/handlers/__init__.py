"""One router per feature, assembled in the order their filters must be tried."""

from __future__ import annotations

from aiogram import Router

from bot.telegram.handlers import (
    admin,
    admin_deposits,
    admin_disputes,
    admin_withdrawals,
    deal_actions,
    deals,
    deposit,
    errors,
    fallback,
    start,
    wallet,
    withdraw,
    wizard,
    wizard_steps,
)

# Tried in this order; the catch-all comes last.
FEATURES = (
    errors,
    start,
    deals,
    deal_actions,
    wizard,
    wizard_steps,
    wallet,
    deposit,
    withdraw,
    admin,
    admin_disputes,
    admin_withdrawals,
    admin_deposits,
    fallback,
)


def _fresh(template: Router) -> Router:
    """A new router holding the template's handlers.

    aiogram attaches a router to one parent only, and every app built in one
    process (two replicas in the benchmark, one per test) needs its own tree;
    the handlers themselves are stateless and shared."""
    router = Router(name=template.name)
    for name, observer in template.observers.items():
        router.observers[name].handlers.extend(observer.handlers)
    return router


def build_router() -> Router:
    root = Router(name="escrow")
    root.include_routers(*(_fresh(feature.router) for feature in FEATURES))
    return root
