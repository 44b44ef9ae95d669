"""An index for the review queue (issue 11, load): unreviewed violations of a compound by start time.

The queue asks for ``review_state = 'unreviewed'`` in the caller's compounds, oldest first, with the
total for paging. Without this index SQLite walked ``(compound_id, start_time)`` from the oldest
violation and skipped every one already decided (reviewers take the oldest first, so nearly all of
them) and counted by reading the whole compound: work that grew with every violation ever stored.

Revision ID: 0007_review_queue_index
Revises: 0005_grid, 0006_report_ledger
"""
from __future__ import annotations

from alembic import op

revision = "0007_review_queue_index"
down_revision = ("0005_grid", "0006_report_ledger")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_violations_state_compound_start", "violations",
                    ["review_state", "compound_id", "start_time"])


def downgrade() -> None:
    op.drop_index("ix_violations_state_compound_start", table_name="violations")
