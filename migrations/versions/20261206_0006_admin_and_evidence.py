"""admin and evidence: blocking users (with an audit trail), dispute evidence,
split settlements, and the notifications about them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = (
    "'invited', 'joined', 'invitation_declined', 'accept', 'decline', 'fund', 'deliver', "
    "'release', 'dispute', 'cancel', 'resolve', 'expire', 'dispute_opened', "
    "'withdrawal_requested', 'withdrawal_decided', 'remind', 'deposit_credited', "
    "'deposit_mismatch', 'withdrawal_paid', 'withdrawal_failed', 'payout_failed'"
)
NEW_KINDS = ", 'dispute_evidence', 'account_blocked', 'account_unblocked'"
STATUSES = (
    "'pending', 'accepted', 'funded', 'delivered', 'disputed', 'released', 'refunded', "
    "'cancelled', 'declined', 'expired'"
)
SPLIT = ", 'split'"
SPLIT_CHECK = (
    "(status = 'split') = (split_seller IS NOT NULL) AND (split_seller IS NULL OR"
    " (split_seller > 0 AND split_seller < amount"
    " AND split_fee BETWEEN 0 AND split_seller))"
)


def _deal_statuses(statuses: str) -> None:
    for name, column, nullable in (
        ("ck_escrows_status", "status", False),
        ("ck_escrows_status_before_dispute", "status_before_dispute", True),
    ):
        op.drop_constraint(op.f(name), "escrows", type_="check")
        check = f"{column} IN ({statuses})"
        if nullable:
            check = f"{column} IS NULL OR {check}"
        op.create_check_constraint(op.f(name), "escrows", check)


def _kinds(kinds: str) -> None:
    op.drop_constraint(op.f("ck_notifications_kind"), "notifications", type_="check")
    op.create_check_constraint(op.f("ck_notifications_kind"), "notifications", f"kind IN ({kinds})")


def upgrade() -> None:
    op.add_column("escrows", sa.Column("split_seller", sa.BigInteger(), nullable=True))
    op.add_column("escrows", sa.Column("split_fee", sa.BigInteger(), nullable=True))
    _deal_statuses(STATUSES + SPLIT)
    op.create_check_constraint(op.f("ck_escrows_split_within_amount"), "escrows", SPLIT_CHECK)
    op.add_column("notifications", sa.Column("evidence_id", sa.BigInteger(), nullable=True))
    _kinds(KINDS + NEW_KINDS)
    op.create_table(
        "dispute_evidence",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("escrow_id", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("file_id", sa.String(length=256), nullable=True),
        sa.Column("file_name", sa.String(length=256), nullable=True),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('photo', 'document', 'text')", name=op.f("ck_dispute_evidence_kind")
        ),
        sa.CheckConstraint(
            "(kind = 'text') = (file_id IS NULL)", name=op.f("ck_dispute_evidence_file_unless_text")
        ),
        sa.ForeignKeyConstraint(
            ["escrow_id"],
            ["escrows.id"],
            name=op.f("fk_dispute_evidence_escrow_id_escrows"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["users.id"], name=op.f("fk_dispute_evidence_sender_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_evidence")),
    )
    op.create_index("ix_dispute_evidence_escrow_id", "dispute_evidence", ["escrow_id", "sender_id"])
    op.create_table(
        "user_status_changes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("admin_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('active', 'blocked')", name=op.f("ck_user_status_changes_status")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_status_changes_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["users.id"], name=op.f("fk_user_status_changes_admin_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_status_changes")),
    )
    op.create_index("ix_user_status_changes_user_id", "user_status_changes", ["user_id", "id"])


def downgrade() -> None:
    # A split deal has no status before this revision: the downgrade refuses
    # (the status check below fails) rather than rewrite what was settled.
    op.drop_index("ix_user_status_changes_user_id", table_name="user_status_changes")
    op.drop_table("user_status_changes")
    op.drop_index("ix_dispute_evidence_escrow_id", table_name="dispute_evidence")
    op.drop_table("dispute_evidence")
    op.execute(
        "DELETE FROM notifications"
        " WHERE kind IN ('dispute_evidence', 'account_blocked', 'account_unblocked')"
    )
    _kinds(KINDS)
    op.drop_column("notifications", "evidence_id")
    op.drop_constraint(op.f("ck_escrows_split_within_amount"), "escrows", type_="check")
    _deal_statuses(STATUSES)
    op.drop_column("escrows", "split_fee")
    op.drop_column("escrows", "split_seller")
