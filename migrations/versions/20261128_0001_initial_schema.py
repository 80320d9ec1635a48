"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 11:54:05.112784
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_accounts",
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("fees", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("fees >= 0", name=op.f("ck_platform_accounts_fees_not_negative")),
        sa.PrimaryKeyConstraint("currency", name=op.f("pk_platform_accounts")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=True),
        sa.Column("first_name", sa.String(length=64), server_default="", nullable=False),
        sa.Column("last_name", sa.String(length=64), nullable=True),
        sa.Column("language_code", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("status IN ('active', 'blocked')", name=op.f("ck_users_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("telegram_id", name=op.f("uq_users_telegram_id")),
    )
    op.create_index(
        "ix_users_username_lower", "users", [sa.literal_column("lower(username)")], unique=False
    )
    op.create_table(
        "escrows",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("buyer_id", sa.BigInteger(), nullable=True),
        sa.Column("seller_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("status_before_dispute", sa.String(length=16), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("funded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'funded', 'delivered', 'disputed', 'released', 'refunded', 'cancelled', 'declined', 'expired')",
            name=op.f("ck_escrows_status"),
        ),
        sa.CheckConstraint(
            "status_before_dispute IS NULL OR status_before_dispute IN ('pending', 'accepted', 'funded', 'delivered', 'disputed', 'released', 'refunded', 'cancelled', 'declined', 'expired')",
            name=op.f("ck_escrows_status_before_dispute"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_escrows_amount_positive")),
        sa.CheckConstraint("buyer_id <> seller_id", name=op.f("ck_escrows_distinct_parties")),
        sa.CheckConstraint(
            "creator_id = buyer_id OR creator_id = seller_id",
            name=op.f("ck_escrows_creator_is_party"),
        ),
        sa.CheckConstraint("fee >= 0 AND fee <= amount", name=op.f("ck_escrows_fee_within_amount")),
        sa.CheckConstraint(
            "fee_bps >= 0 AND fee_bps <= 10000", name=op.f("ck_escrows_fee_bps_range")
        ),
        sa.ForeignKeyConstraint(["buyer_id"], ["users.id"], name=op.f("fk_escrows_buyer_id_users")),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["users.id"], name=op.f("fk_escrows_creator_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"], ["users.id"], name=op.f("fk_escrows_seller_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escrows")),
        sa.UniqueConstraint("code", name=op.f("uq_escrows_code")),
    )
    op.create_index(
        "idx_escrow_buyer_status", "escrows", ["buyer_id", "status", "id"], unique=False
    )
    op.create_index("idx_escrow_created_at", "escrows", ["created_at"], unique=False)
    op.create_index(
        "idx_escrow_seller_status", "escrows", ["seller_id", "status", "id"], unique=False
    )
    op.create_index(
        "ix_escrows_disputed",
        "escrows",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status = 'disputed'"),
    )
    op.create_index(
        "ix_escrows_open_deadline",
        "escrows",
        ["deadline_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'accepted')"),
    )
    op.create_table(
        "wallets",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("available", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("held", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("available >= 0", name=op.f("ck_wallets_available_not_negative")),
        sa.CheckConstraint("held >= 0", name=op.f("ck_wallets_held_not_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_wallets_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets")),
    )
    op.create_index("idx_wallet_user_currency", "wallets", ["user_id", "currency"], unique=True)
    op.create_table(
        "withdrawals",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')", name=op.f("ck_withdrawals_status")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_withdrawals_amount_positive")),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_withdrawals_decided_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_withdrawals_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_withdrawals")),
    )
    op.create_index(
        "ix_withdrawals_pending",
        "withdrawals",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_withdrawals_user_id", "withdrawals", ["user_id", "id"], unique=False)
    op.create_table(
        "deal_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("escrow_id", sa.BigInteger(), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_deal_events_actor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["escrow_id"],
            ["escrows.id"],
            name=op.f("fk_deal_events_escrow_id_escrows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal_events")),
    )
    op.create_index("ix_deal_events_escrow_id", "deal_events", ["escrow_id", "id"], unique=False)
    op.create_table(
        "invitations",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("escrow_id", sa.BigInteger(), nullable=False),
        sa.Column("inviter_id", sa.BigInteger(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("username", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('active', 'accepted', 'declined', 'expired', 'revoked')",
            name=op.f("ck_invitations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["escrow_id"],
            ["escrows.id"],
            name=op.f("fk_invitations_escrow_id_escrows"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inviter_id"], ["users.id"], name=op.f("fk_invitations_inviter_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("code", name=op.f("uq_invitations_code")),
    )
    op.create_index(
        "idx_invitation_telegram_status", "invitations", ["telegram_id", "status"], unique=False
    )
    op.create_index("ix_invitations_escrow_id", "invitations", ["escrow_id"], unique=False)
    op.create_index(
        "ix_invitations_username_status", "invitations", ["username", "status"], unique=False
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("leg", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("account", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("escrow_id", sa.BigInteger(), nullable=True),
        sa.Column("withdrawal_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(account IN ('available', 'held')) = (user_id IS NOT NULL)",
            name=op.f("ck_ledger_entries_wallet_legs_have_user"),
        ),
        sa.CheckConstraint(
            "account IN ('available', 'held', 'fees', 'external')",
            name=op.f("ck_ledger_entries_account"),
        ),
        sa.CheckConstraint(
            "kind IN ('deposit', 'hold', 'release', 'fee', 'refund', 'withdrawal')",
            name=op.f("ck_ledger_entries_kind"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entries_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["escrow_id"], ["escrows.id"], name=op.f("fk_ledger_entries_escrow_id_escrows")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ledger_entries_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["withdrawal_id"],
            ["withdrawals.id"],
            name=op.f("fk_ledger_entries_withdrawal_id_withdrawals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index("ix_ledger_entries_escrow_id", "ledger_entries", ["escrow_id"], unique=False)
    op.create_index(
        "ix_ledger_entries_user_id", "ledger_entries", ["user_id", "currency", "id"], unique=False
    )
    op.create_index(
        "uq_ledger_entries_idempotency_key_leg",
        "ledger_entries",
        ["idempotency_key", "leg"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_ledger_entries_idempotency_key_leg", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_user_id", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_escrow_id", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index("ix_invitations_username_status", table_name="invitations")
    op.drop_index("ix_invitations_escrow_id", table_name="invitations")
    op.drop_index("idx_invitation_telegram_status", table_name="invitations")
    op.drop_table("invitations")
    op.drop_index("ix_deal_events_escrow_id", table_name="deal_events")
    op.drop_table("deal_events")
    op.drop_index("ix_withdrawals_user_id", table_name="withdrawals")
    op.drop_index(
        "ix_withdrawals_pending",
        table_name="withdrawals",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("withdrawals")
    op.drop_index("idx_wallet_user_currency", table_name="wallets")
    op.drop_table("wallets")
    op.drop_index(
        "ix_escrows_open_deadline",
        table_name="escrows",
        postgresql_where=sa.text("status IN ('pending', 'accepted')"),
    )
    op.drop_index(
        "ix_escrows_disputed", table_name="escrows", postgresql_where=sa.text("status = 'disputed'")
    )
    op.drop_index("idx_escrow_seller_status", table_name="escrows")
    op.drop_index("idx_escrow_created_at", table_name="escrows")
    op.drop_index("idx_escrow_buyer_status", table_name="escrows")
    op.drop_table("escrows")
    op.drop_index("ix_users_username_lower", table_name="users")
    op.drop_table("users")
    op.drop_table("platform_accounts")
