"""One router per feature, assembled in the order their filters must be tried."""

from __future__ import annotations

from bot.telegram.handlers import (
    admin,
    admin_deposits,
    admin_disputes,
    admin_split,
    admin_users,
    admin_withdrawals,
    deal_actions,
    deals,
    deposit,
    errors,
    evidence,
    fallback,
    language,
    ratings,
    start,
    wallet,
    withdraw,
    wizard,
    wizard_counterparty,
    wizard_steps,
)
from bot.telegram.routing import Features

# Tried in this order; the catch-all comes last. Each is a factory: a router
# has one parent, and every app built in one process (one per test, two
# replicas in the benchmark) gets its own tree.
FEATURES = (
    errors.router,
    evidence.router,  # its /cancel before start's
    start.router,
    language.router,
    deals.router,
    deal_actions.router,
    ratings.router,
    wizard.router,
    wizard_steps.router,
    wizard_counterparty.router,
    wallet.router,
    deposit.router,
    withdraw.router,
    admin.router,
    admin_disputes.router,
    admin_split.router,
    admin_withdrawals.router,
    admin_deposits.router,
    admin_users.router,
    fallback.router,
)


def build_router() -> Features:
    """The feature routers, a press sent only to those that take it."""
    return Features(*(feature() for feature in FEATURES))
