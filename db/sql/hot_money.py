"""The hot-statement registry's part for money (see `db.sql.hot`): holds,
withdrawals and their payouts, deposits and their invoices."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from db.explain import HotQuery, Sample
from db.sql import deposits, ledger, reads, withdrawals

GRACE = timedelta(seconds=30)


def _hold(s: Sample) -> dict[str, Any]:
    """POST_MOVEMENT's params for a hold of 1 unit of the user's funds."""
    return {
        "key": "hot:hold",
        "currency": s.currency,
        "escrow_id": s.funded_deal_id,
        "withdrawal_id": None,
        "fee": 0,
        "move_users": [s.user_id],
        "move_available": [-1],
        "move_held": [1],
        "leg_numbers": [0, 1],
        "leg_kinds": ["hold", "hold"],
        "leg_accounts": ["available", "held"],
        "leg_users": [s.user_id, s.user_id],
        "leg_amounts": [-1, 1],
    }


_H = HotQuery
# fmt: off
MONEY_QUERIES: tuple[HotQuery, ...] = (
    # -- money ---------------------------------------------------------------------------
    _H("post_movement", ledger.POST_MOVEMENT, _hold, ("idx_wallet_user_currency", "pk_users"),
       True),
    _H("withdrawn_today", withdrawals.WITHDRAWN_TODAY,
       lambda s: {"user_id": s.user_id, "currency": s.currency},
       ("ix_withdrawals_user_id",), True),
    _H("insert_withdrawal", withdrawals.INSERT_WITHDRAWAL,
       lambda s: {"user_id": s.user_id, "currency": s.currency, "amount": 1,
                  "destination": "hot", "grace": GRACE, "admin_chats": [1]},
       ("pk_users",), True),
    _H("lock_withdrawal", withdrawals.LOCK_WITHDRAWAL,
       lambda s: {"id": s.withdrawal_id, "admin_id": s.admin_id},
       ("pk_withdrawals", "pk_users"), True),
    _H("decide_withdrawal", withdrawals.DECIDE_WITHDRAWAL,
       lambda s: {"id": s.withdrawal_id, "status": "rejected", "admin_id": s.admin_id,
                  "note": None, "grace": GRACE},
       ("ix_withdrawals_pending", "pk_users"), True),
    # A full batch (100) hashes the users table for the owners' Telegram ids in
    # the custom plan; the generic plan looks each one up.
    _H("lock_stale_withdrawals", withdrawals.LOCK_STALE_WITHDRAWALS,
       lambda s: {"older_than": timedelta(hours=1), "limit": 100},
       ("ix_withdrawals_pending",), True, ("users",)),
    _H("lock_with_owner", withdrawals.LOCK_WITH_OWNER, lambda s: {"id": s.withdrawal_id},
       ("pk_withdrawals", "pk_users"), True),
    _H("approve_for_payout", withdrawals.APPROVE_FOR_PAYOUT,
       lambda s: {"id": s.withdrawal_id, "admin_id": s.admin_id, "provider": s.provider},
       ("ix_withdrawals_pending",), True),
    _H("settle_payout", withdrawals.SETTLE_PAYOUT,
       lambda s: {"id": s.sending_withdrawal_id, "status": "paid", "transfer_id": 1,
                  "failure": None, "grace": GRACE, "admin_chats": []},
       ("ix_withdrawals_sending", "pk_users"), True),
    _H("sending_payouts", withdrawals.SENDING,
       lambda s: {"provider": s.provider, "after": 0, "limit": 100, "min_age": GRACE},
       ("ix_withdrawals_sending", "pk_users")),
    _H("user_withdrawals", reads.USER_WITHDRAWALS,
       lambda s: {"user_id": s.withdrawer_id, "limit": 5}, ("ix_withdrawals_user_id",)),
    _H("pending_withdrawals", reads.PENDING_WITHDRAWALS,
       lambda s: {"limit": reads.PAGE_SIZE, "admin_id": s.admin_id},
       ("pk_users", "ix_withdrawals_pending")),
    _H("deposited_today", deposits.DEPOSITED_TODAY,
       lambda s: {"user_id": s.user_id, "currency": s.currency},
       ("ix_deposits_user_id",), True),
    _H("open_deposit", deposits.OPEN_DEPOSIT,
       lambda s: {"user_id": s.user_id, "currency": s.currency, "amount": 1,
                  "provider": s.provider},
       ("pk_users",), True),
    _H("activate_deposit", deposits.ACTIVATE,
       lambda s: {"id": s.creating_deposit_id, "invoice_id": 1, "pay_url": "hot",
                  "expires_at": None},
       ("ix_deposits_open",), True),
    _H("abandon_deposit", deposits.ABANDON, lambda s: {"id": s.creating_deposit_id},
       ("ix_deposits_open",), True),
    _H("lock_deposit_by_invoice", deposits.LOCK_BY_INVOICE,
       lambda s: {"provider": s.provider, "invoice_id": s.invoice_id},
       ("uq_deposits_provider_invoice",), True),
    _H("settle_deposit", deposits.SETTLE,
       lambda s: {"id": s.deposit_id, "status": "paid", "paid_asset": s.currency,
                  "paid_amount": "1", "fee": 0, "grace": GRACE, "admin_chats": []},
       ("ix_deposits_open", "pk_users"), True),
    _H("unsettled_deposits", deposits.UNSETTLED,
       lambda s: {"provider": s.provider, "after": 0, "limit": 100}, ("ix_deposits_open",)),
)
# fmt: on
