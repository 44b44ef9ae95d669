"""Initial schema: compounds, cameras, API keys, violations with their evidence objects, reviews.

Revision ID: 0001
Revises: 
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('compounds', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('worker', 'reviewer', 'admin')", name=op.f('ck_api_keys_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys'))
    )
    op.create_table('compounds',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compounds'))
    )
    op.create_table('cameras',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('compound_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['compound_id'], ['compounds.id'], name=op.f('fk_cameras_compound_id_compounds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cameras'))
    )
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cameras_compound_id'), ['compound_id'], unique=False)

    op.create_table('violations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('compound_id', sa.String(length=64), nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('zone_id', sa.String(length=64), nullable=False),
    sa.Column('start_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('model_version', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('boxes', sa.JSON(), nullable=False),
    sa.Column('review_state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("review_state IN ('unreviewed', 'confirmed', 'rejected')", name=op.f('ck_violations_review_state')),
    sa.CheckConstraint("source IN ('live', 'rescan')", name=op.f('ck_violations_source')),
    sa.CheckConstraint('confidence >= 0 AND confidence <= 1', name=op.f('ck_violations_confidence')),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_violations_camera_id_cameras')),
    sa.ForeignKeyConstraint(['compound_id'], ['compounds.id'], name=op.f('fk_violations_compound_id_compounds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_violations'))
    )
    with op.batch_alter_table('violations', schema=None) as batch_op:
        batch_op.create_index('ix_violations_camera_start', ['camera_id', 'start_time'], unique=False)
        batch_op.create_index('ix_violations_compound_start', ['compound_id', 'start_time'], unique=False)
        batch_op.create_index('ix_violations_start_time', ['start_time'], unique=False)

    op.create_table('evidence_objects',
    sa.Column('violation_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.CheckConstraint("kind IN ('snapshot', 'clip', 'sidecar', 'crop')", name=op.f('ck_evidence_objects_kind')),
    sa.ForeignKeyConstraint(['violation_id'], ['violations.id'], name=op.f('fk_evidence_objects_violation_id_violations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('violation_id', 'kind', name=op.f('pk_evidence_objects'))
    )
    op.create_table('reviews',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('violation_id', sa.String(length=32), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('reviewer_key_id', sa.String(length=32), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("reason IS NULL OR reason IN ('false_alarm', 'not_a_violation', 'duplicate', 'already_handled')", name=op.f('ck_reviews_reason')),
    sa.CheckConstraint("verdict IN ('confirm', 'reject')", name=op.f('ck_reviews_verdict')),
    sa.ForeignKeyConstraint(['reviewer_key_id'], ['api_keys.id'], name=op.f('fk_reviews_reviewer_key_id_api_keys')),
    sa.ForeignKeyConstraint(['violation_id'], ['violations.id'], name=op.f('fk_reviews_violation_id_violations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reviews')),
    sa.UniqueConstraint('violation_id', name=op.f('uq_reviews_violation_id'))
    )


def downgrade() -> None:
    op.drop_table('reviews')
    op.drop_table('evidence_objects')
    with op.batch_alter_table('violations', schema=None) as batch_op:
        batch_op.drop_index('ix_violations_start_time')
        batch_op.drop_index('ix_violations_compound_start')
        batch_op.drop_index('ix_violations_camera_start')

    op.drop_table('violations')
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameras_compound_id'))

    op.drop_table('cameras')
    op.drop_table('compounds')
    op.drop_table('api_keys')
