"""identity and create keys: one holder per @username, when the profile was
reported, and the wizard's idempotency key on deals

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # When Telegram last reported this user's name and @username to us.
    op.add_column(
        "users",
        sa.Column(
            "profile_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    # Unknown for existing rows: their first contact is the safe guess (it
    # errs older; updated_at moves with every money movement).
    op.execute("UPDATE users SET profile_at = created_at")
    # A name held by several rows: nobody can tell which holds it now, so none
    # keeps it (each gets it back when its owner next writes to the bot).
    op.execute("""
        UPDATE users SET username = NULL, version = version + 1
        WHERE lower(username) IN (
            SELECT lower(username) FROM users WHERE username IS NOT NULL
            GROUP BY lower(username) HAVING count(*) > 1
        )
    """)
    op.drop_index("ix_users_username_lower", table_name="users")
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    # The wizard's id: a Create press retried after an unknown outcome finds
    # the deal it made instead of making a second one.
    op.add_column("escrows", sa.Column("create_key", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_escrows_creator_create_key",
        "escrows",
        ["creator_id", "create_key"],
        unique=True,
        postgresql_where=sa.text("create_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_escrows_creator_create_key",
        table_name="escrows",
        postgresql_where=sa.text("create_key IS NOT NULL"),
    )
    op.drop_column("escrows", "create_key")
    op.drop_index("uq_users_username_lower", table_name="users")
    op.create_index("ix_users_username_lower", "users", [sa.text("lower(username)")])
    op.drop_column("users", "profile_at")
