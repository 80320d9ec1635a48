"""reputation: each user's record per currency (counters kept by the statements
that change them) and the parties' ratings of completed deals

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    zero = sa.text("0")
    op.create_table(
        "reputations",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("deals", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("volume", sa.BigInteger(), server_default=zero, nullable=False),
        sa.Column("disputes_opened", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("disputes_lost", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("ratings", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("stars", sa.Integer(), server_default=zero, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reputations_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "currency", name=op.f("pk_reputations")),
    )
    op.create_table(
        "ratings",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("escrow_id", sa.BigInteger(), nullable=False),
        sa.Column("rater_id", sa.BigInteger(), nullable=False),
        sa.Column("rated_id", sa.BigInteger(), nullable=False),
        sa.Column("stars", sa.SmallInteger(), nullable=False),
        sa.Column("review", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("stars BETWEEN 1 AND 5", name=op.f("ck_ratings_stars_range")),
        sa.ForeignKeyConstraint(
            ["escrow_id"], ["escrows.id"], name=op.f("fk_ratings_escrow_id_escrows")
        ),
        sa.ForeignKeyConstraint(["rater_id"], ["users.id"], name=op.f("fk_ratings_rater_id_users")),
        sa.ForeignKeyConstraint(["rated_id"], ["users.id"], name=op.f("fk_ratings_rated_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
    )
    op.create_index("uq_ratings_deal_rater", "ratings", ["escrow_id", "rater_id"], unique=True)
    op.create_index(
        "ix_ratings_reviews",
        "ratings",
        ["rated_id", "id"],
        unique=False,
        postgresql_where=sa.text("review IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_ratings_reviews", table_name="ratings")
    op.drop_index("uq_ratings_deal_rater", table_name="ratings")
    op.drop_table("ratings")
    op.drop_table("reputations")
