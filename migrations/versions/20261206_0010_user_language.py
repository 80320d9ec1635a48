"""user language: the locale a user chose (NULL: follow Telegram's
language_code), and the language each notification is written in

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("locale", sa.String(length=16), nullable=True))
    op.add_column("notifications", sa.Column("language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("notifications", "language")
    op.drop_column("users", "locale")
