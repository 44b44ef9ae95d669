"""Live cameras: camera health events (one row per occurrence of a condition) and worker leases
(which worker runs which camera, renewed while it lives) with the workers' heartbeats (how many share
the cameras).

Revision ID: 0003_live_cameras
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_live_cameras"
down_revision = "0002"
branch_labels = None
depends_on = None

HEALTH_KINDS = ("offline", "frozen", "covered", "out_of_focus", "view_moved")


def upgrade() -> None:
    op.create_table(
        "camera_health_events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("compound_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.String(500), nullable=False, server_default=""),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN (" + ", ".join(repr(k) for k in HEALTH_KINDS) + ")",
                           name=op.f("ck_camera_health_events_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camera_health_events")),
    )
    op.create_index("ix_camera_health_events_camera", "camera_health_events", ["compound_id", "camera_id", "started_at"])
    op.create_table(
        "worker_leases",
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", name=op.f("pk_worker_leases")),
    )
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sa.String(128), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
    op.drop_table("worker_leases")
    op.drop_index("ix_camera_health_events_camera", table_name="camera_health_events")
    op.drop_table("camera_health_events")
