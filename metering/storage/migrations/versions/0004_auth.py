"""Authentication: API tokens (hashed at rest) and account tenants.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only the SHA-256 of a token is stored, with its public id (the prefix of
    # the token itself); the token is shown once, when it is created.
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, server_default=""),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("create_time_us", sa.BigInteger, nullable=False),
        sa.Column("revoke_time_us", sa.BigInteger, nullable=True),
    )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(128), nullable=True))
    op.create_index("ix_accounts_tenant", "accounts", ["tenant_id"])
    # Bumped by every token change, so that every process notices a revocation.
    op.execute("INSERT INTO revisions (name, revision) VALUES ('tokens', 1)")


def downgrade() -> None:
    op.execute("DELETE FROM revisions WHERE name = 'tokens'")
    op.drop_index("ix_accounts_tenant", "accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("tenant_id")
    op.drop_table("api_tokens")
