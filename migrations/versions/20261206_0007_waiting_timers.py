"""waiting timers: a funded deal's delivery deadline, a delivered deal's
automatic release, and the pace of deals opened with strangers

Deals funded or delivered before this revision get their clocks from the
defaults (7 days to deliver, 72 hours to release), counted from when they were
funded or delivered, and never sooner than 24 hours from now: nobody's deal
moves on at the upgrade without a day's notice.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLOCKS = ("deliver_due_at", "delivered_at", "release_due_at")


def upgrade() -> None:
    for column in CLOCKS:
        op.add_column("escrows", sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "escrows",
        sa.Column("to_stranger", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute("""
UPDATE escrows e SET delivered_at = (SELECT max(created_at) FROM deal_events
                                     WHERE escrow_id = e.id AND to_status = 'delivered')
WHERE e.status IN ('delivered', 'disputed')
""")
    op.execute("""
UPDATE escrows SET deliver_due_at = greatest(coalesce(funded_at, updated_at)
                                             + interval '168 hours', now() + interval '24 hours')
WHERE status = 'funded'
""")
    op.execute("""
UPDATE escrows SET release_due_at = greatest(coalesce(delivered_at, updated_at)
                                             + interval '72 hours', now() + interval '24 hours')
WHERE status = 'delivered'
""")
    op.create_index(
        "ix_escrows_release_due",
        "escrows",
        ["release_due_at"],
        unique=False,
        postgresql_where=sa.text("status = 'delivered' AND release_due_at IS NOT NULL"),
    )
    op.create_index(
        "ix_escrows_deliver_due",
        "escrows",
        ["deliver_due_at"],
        unique=False,
        postgresql_where=sa.text("status = 'funded' AND deliver_due_at IS NOT NULL"),
    )
    op.create_index(
        "ix_escrows_creator_created", "escrows", ["creator_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_escrows_creator_stranger",
        "escrows",
        ["creator_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("to_stranger"),
    )


def downgrade() -> None:
    for index in (
        "ix_escrows_creator_stranger",
        "ix_escrows_creator_created",
        "ix_escrows_deliver_due",
        "ix_escrows_release_due",
    ):
        op.drop_index(index, table_name="escrows")
    # A deal refunded to its buyer past the delivery deadline, or released
    # automatically, stays as it is: its history says who moved it.
    op.drop_column("escrows", "to_stranger")
    for column in reversed(CLOCKS):
        op.drop_column("escrows", column)
