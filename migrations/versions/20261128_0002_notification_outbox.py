"""notification outbox: messages written in the transaction of the change they tell

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 14:13:42.140855
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("escrow_id", sa.BigInteger(), nullable=True),
        sa.Column("withdrawal_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "due_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('invited', 'joined', 'invitation_declined', 'accept', 'decline', 'fund', 'deliver', 'release', 'dispute', 'cancel', 'resolve', 'expire', 'dispute_opened', 'withdrawal_requested', 'withdrawal_decided', 'remind')",
            name=op.f("ck_notifications_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'undeliverable', 'failed', 'obsolete')",
            name=op.f("ck_notifications_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_notifications_created_at",
        "notifications",
        ["created_at"],
        unique=False,
        postgresql_using="brin",
    )
    op.create_index(
        "uq_notifications_reminder",
        "notifications",
        ["escrow_id", "user_id", "note"],
        unique=True,
        postgresql_where=sa.text("kind = 'remind'"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_notifications_reminder",
        table_name="notifications",
        postgresql_where=sa.text("kind = 'remind'"),
    )
    op.drop_index(
        "ix_notifications_created_at", table_name="notifications", postgresql_using="brin"
    )
    op.drop_index(
        "ix_notifications_due",
        table_name="notifications",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("notifications")
