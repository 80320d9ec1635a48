"""deposit invoices: deposits through a payment provider (Crypto Pay), and
notifications about them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = (
    "'invited', 'joined', 'invitation_declined', 'accept', 'decline', 'fund', 'deliver', "
    "'release', 'dispute', 'cancel', 'resolve', 'expire', 'dispute_opened', "
    "'withdrawal_requested', 'withdrawal_decided', 'remind'"
)
DEPOSIT_KINDS = ", 'deposit_credited', 'deposit_mismatch'"


def upgrade() -> None:
    op.create_table(
        "deposits",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=True),
        sa.Column("pay_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="creating", nullable=False),
        sa.Column("paid_asset", sa.String(length=16), nullable=True),
        sa.Column("paid_amount", sa.String(length=64), nullable=True),
        sa.Column("fee", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('creating', 'active', 'paid', 'expired', 'mismatched', 'failed')",
            name=op.f("ck_deposits_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_deposits_amount_positive")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_deposits_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposits")),
    )
    op.create_index(
        "uq_deposits_provider_invoice",
        "deposits",
        ["provider", "invoice_id"],
        unique=True,
        postgresql_where=sa.text("invoice_id IS NOT NULL"),
    )
    op.create_index("ix_deposits_user_id", "deposits", ["user_id", "created_at"], unique=False)
    op.create_index(
        "ix_deposits_open",
        "deposits",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status IN ('creating', 'active')"),
    )
    op.add_column("notifications", sa.Column("deposit_id", sa.BigInteger(), nullable=True))
    op.drop_constraint(op.f("ck_notifications_kind"), "notifications", type_="check")
    op.create_check_constraint(
        op.f("ck_notifications_kind"), "notifications", f"kind IN ({KINDS}{DEPOSIT_KINDS})"
    )


def downgrade() -> None:
    op.execute("DELETE FROM notifications WHERE kind IN ('deposit_credited', 'deposit_mismatch')")
    op.drop_constraint(op.f("ck_notifications_kind"), "notifications", type_="check")
    op.create_check_constraint(op.f("ck_notifications_kind"), "notifications", f"kind IN ({KINDS})")
    op.drop_column("notifications", "deposit_id")
    op.drop_index("ix_deposits_open", table_name="deposits")
    op.drop_index("ix_deposits_user_id", table_name="deposits")
    op.drop_index("uq_deposits_provider_invoice", table_name="deposits")
    op.drop_table("deposits")
