"""payouts: an approved withdrawal paid by a provider's transfer (Crypto Pay),
sending until it is settled, and notifications about it

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = (
    "'invited', 'joined', 'invitation_declined', 'accept', 'decline', 'fund', 'deliver', "
    "'release', 'dispute', 'cancel', 'resolve', 'expire', 'dispute_opened', "
    "'withdrawal_requested', 'withdrawal_decided', 'remind', 'deposit_credited', "
    "'deposit_mismatch'"
)
PAYOUT_KINDS = ", 'withdrawal_paid', 'withdrawal_failed', 'payout_failed'"
STATUSES = "'pending', 'approved', 'rejected'"
PAYOUT_STATUSES = ", 'sending', 'paid', 'failed'"


def upgrade() -> None:
    op.add_column("withdrawals", sa.Column("payout", sa.String(length=16), nullable=True))
    op.add_column("withdrawals", sa.Column("transfer_id", sa.BigInteger(), nullable=True))
    op.add_column("withdrawals", sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("withdrawals", sa.Column("failure", sa.Text(), nullable=True))
    op.drop_constraint(op.f("ck_withdrawals_status"), "withdrawals", type_="check")
    op.create_check_constraint(
        op.f("ck_withdrawals_status"), "withdrawals", f"status IN ({STATUSES}{PAYOUT_STATUSES})"
    )
    op.create_index(
        "ix_withdrawals_sending",
        "withdrawals",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.drop_constraint(op.f("ck_notifications_kind"), "notifications", type_="check")
    op.create_check_constraint(
        op.f("ck_notifications_kind"), "notifications", f"kind IN ({KINDS}{PAYOUT_KINDS})"
    )


def downgrade() -> None:
    op.execute(
        "DELETE FROM notifications"
        " WHERE kind IN ('withdrawal_paid', 'withdrawal_failed', 'payout_failed')"
    )
    op.drop_constraint(op.f("ck_notifications_kind"), "notifications", type_="check")
    op.create_check_constraint(op.f("ck_notifications_kind"), "notifications", f"kind IN ({KINDS})")
    op.drop_index("ix_withdrawals_sending", table_name="withdrawals")
    op.drop_constraint(op.f("ck_withdrawals_status"), "withdrawals", type_="check")
    op.create_check_constraint(
        op.f("ck_withdrawals_status"), "withdrawals", f"status IN ({STATUSES})"
    )
    for column in ("failure", "paid_at", "transfer_id", "payout"):
        op.drop_column("withdrawals", column)
