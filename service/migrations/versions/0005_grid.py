"""Grid responsibility (网格化, issue 12): who answers for each area of a compound (``grid_entries``: whole
compound, building, floor or zone), which building and floor each camera and zone is in (``grid_places``,
from the site file), and ``cases.assigned_by`` ("grid" when a confirmation assigned the case from the grid,
"manual" after the assign endpoint). Merges the two heads 0003_live_cameras and 0004_rescan_jobs.

Revision ID: 0005_grid
Revises: 0003_live_cameras, 0004_rescan_jobs
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_grid"
down_revision = ("0003_live_cameras", "0004_rescan_jobs")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grid_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("compound_id", sa.String(64), nullable=False),
        sa.Column("building", sa.String(64), nullable=False),
        sa.Column("floor", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("assignee", sa.String(200), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('site', 'api')", name=op.f("ck_grid_entries_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_entries")),
        sa.UniqueConstraint("compound_id", "building", "floor", "camera_id", "zone_id", name="uq_grid_entries_area"),
    )
    op.create_table(
        "grid_places",
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("compound_id", sa.String(64), nullable=False),
        sa.Column("building", sa.String(64), nullable=False),
        sa.Column("floor", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", "zone_id", name=op.f("pk_grid_places")),
    )
    op.create_index("ix_grid_places_compound_id", "grid_places", ["compound_id"])
    # a nullable column needs no table rebuild on SQLite (plain ALTER TABLE … ADD COLUMN)
    op.add_column("cases", sa.Column("assigned_by", sa.String(16), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite ≥ 3.35 drops a column in place; a batch rebuild of `cases` would need foreign keys off (0002)
        op.execute("ALTER TABLE cases DROP COLUMN assigned_by")
    else:
        op.drop_column("cases", "assigned_by")
    op.drop_index("ix_grid_places_compound_id", table_name="grid_places")
    op.drop_table("grid_places")
    op.drop_table("grid_entries")
