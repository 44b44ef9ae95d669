"""Reports for supervisors (issue 12): the property company and the district of a compound (from the
site file), and the ledger documents (台账) — monthly reports and bulletins kept in the object store,
one per kind, scope, period and format.

Revision ID: 0006_report_ledger
Revises: 0003_live_cameras, 0004_rescan_jobs
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_report_ledger"
down_revision = ("0003_live_cameras", "0004_rescan_jobs")
branch_labels = None
depends_on = None

KINDS = ("monthly_compound", "monthly_company", "bulletin_district")
FORMATS = ("pdf", "html", "xlsx")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    # nullable columns without a default: a plain ADD COLUMN on SQLite too (no table rebuild)
    op.add_column("compounds", sa.Column("company", sa.String(100), nullable=True))
    op.add_column("compounds", sa.Column("district", sa.String(100), nullable=True))
    op.create_index(op.f("ix_compounds_company"), "compounds", ["company"])
    op.create_index(op.f("ix_compounds_district"), "compounds", ["district"])
    op.create_table(
        "ledger_documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("compounds", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_documents")),
        sa.UniqueConstraint("kind", "scope", "period", "format", name=op.f("uq_ledger_documents_scope_period_format")),
        sa.CheckConstraint(_one_of("kind", KINDS), name=op.f("ck_ledger_documents_kind")),
        sa.CheckConstraint(_one_of("format", FORMATS), name=op.f("ck_ledger_documents_format")),
    )
    op.create_index(op.f("ix_ledger_documents_period"), "ledger_documents", ["period"])


def downgrade() -> None:
    op.drop_index("ix_ledger_documents_period", table_name="ledger_documents")
    op.drop_table("ledger_documents")
    op.drop_index("ix_compounds_district", table_name="compounds")
    op.drop_index("ix_compounds_company", table_name="compounds")
    with op.batch_alter_table("compounds") as batch:
        batch.drop_column("district")
        batch.drop_column("company")
