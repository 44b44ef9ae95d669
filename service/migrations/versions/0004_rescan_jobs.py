"""Re-scan jobs started through the API (issue 10): the source (an S3 prefix), the mode, who started it,
its state (queued → running → done / partial / failed / cancelled), live progress, the count of
violations found and of events it created, and the JSON report when it ends.

Revision ID: 0004_rescan_jobs
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_rescan_jobs"
down_revision = "0002"
branch_labels = None
depends_on = None

STATUSES = ("queued", "running", "done", "partial", "failed", "cancelled")
MODES = ("sampled", "keyframes", "adaptive")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "rescan_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("compound_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("fresh", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_by_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(128), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("files_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("files_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("files_bad", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("files_skipped", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("footage_done_s", sa.Float(), nullable=False, server_default="0"),
        sa.Column("violations_found", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("violations_new", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("violations_unstored", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("current_file", sa.String(1024), nullable=True),
        sa.Column("current_fraction", sa.Float(), nullable=True),
        sa.Column("x_realtime", sa.Float(), nullable=True),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("model", sa.String(1024), nullable=True),
        sa.Column("site_sha256", sa.String(64), nullable=True),
        sa.Column("state_dir", sa.String(1024), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.CheckConstraint(_one_of("status", STATUSES), name=op.f("ck_rescan_jobs_status")),
        sa.CheckConstraint(_one_of("mode", MODES), name=op.f("ck_rescan_jobs_mode")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rescan_jobs")),
    )
    op.create_index("ix_rescan_jobs_status_id", "rescan_jobs", ["status", "id"])
    op.create_index("ix_rescan_jobs_compound_created", "rescan_jobs", ["compound_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_rescan_jobs_compound_created", table_name="rescan_jobs")
    op.drop_index("ix_rescan_jobs_status_id", table_name="rescan_jobs")
    op.drop_table("rescan_jobs")
