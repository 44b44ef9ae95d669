"""Accounts (users, role grants per compound, access tokens), review claims, rectification cases with
their re-inspections, and the append-only audit log. API keys may now carry every role.

Data already in a 0001 database is kept: reviews keep their key, and every confirmed violation gets a
case (state ``open``; later ones of the same compound/camera/zone/rule join the first one's case).

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

KEY_ROLES = ("worker", "viewer", "reviewer", "supervisor", "admin")


def _roles(roles: tuple[str, ...]) -> str:
    return ", ".join(repr(r) for r in roles)


# The audit log is append-only in the database too, not only in the ORM.
AUDIT_APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    ],
}
AUDIT_DROP_GUARDS = {
    "sqlite": ["DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete"],
    "postgresql": ["DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
                   "DROP FUNCTION IF EXISTS audit_log_append_only()"],
}

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Batch mode rebuilds tables (copy, drop, rename). With foreign keys on, dropping ``violations``
        # would cascade-delete its reviews and evidence rows, so they are off while the schema changes.
        # The pragma only works outside a transaction: commit what Alembic has open first.
        dbapi = bind.connection.dbapi_connection
        if dbapi.in_transaction:
            dbapi.commit()
        dbapi.execute("PRAGMA foreign_keys=OFF")
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('actor_name', sa.String(length=200), nullable=False),
    sa.Column('compound_id', sa.String(length=64), nullable=True),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_compound_at', ['compound_id', 'at'], unique=False)
        batch_op.create_index('ix_audit_log_entity', ['entity', 'entity_id'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('access_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_access_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_access_tokens'))
    )
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('role_grants',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('compound_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.CheckConstraint("role IN ('viewer', 'reviewer', 'supervisor', 'admin')", name=op.f('ck_role_grants_role')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_role_grants_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'compound_id', name=op.f('pk_role_grants'))
    )
    op.create_table('cases',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('violation_id', sa.String(length=32), nullable=False),
    sa.Column('compound_id', sa.String(length=64), nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('zone_id', sa.String(length=64), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('assignee', sa.String(length=200), nullable=True),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rectification_note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rectified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reinspected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('open', 'rectified', 'reinspected', 'closed', 'overdue', 'reopened')", name=op.f('ck_cases_state')),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_cases_camera_id_cameras')),
    sa.ForeignKeyConstraint(['compound_id'], ['compounds.id'], name=op.f('fk_cases_compound_id_compounds')),
    sa.ForeignKeyConstraint(['violation_id'], ['violations.id'], name=op.f('fk_cases_violation_id_violations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('violation_id', name=op.f('uq_cases_violation_id'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_compound_state', ['compound_id', 'state'], unique=False)
        batch_op.create_index('ix_cases_spot', ['compound_id', 'camera_id', 'zone_id', 'rule'], unique=False)

    op.create_table('case_inspections',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('inspected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('frame_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('scene_clear', sa.Boolean(), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('before_key', sa.String(length=512), nullable=True),
    sa.Column('before_sha256', sa.String(length=64), nullable=True),
    sa.Column('after_key', sa.String(length=512), nullable=False),
    sa.Column('after_sha256', sa.String(length=64), nullable=False),
    sa.Column('after_size', sa.Integer(), nullable=False),
    sa.Column('inspected_by', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_inspections_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_inspections'))
    )
    with op.batch_alter_table('case_inspections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_inspections_case_id'), ['case_id'], unique=False)

    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reviewer_user_id', sa.Integer(), nullable=True))
        batch_op.alter_column('reviewer_key_id',
               existing_type=sa.VARCHAR(length=32),
               nullable=True)
        batch_op.create_foreign_key(batch_op.f('fk_reviews_reviewer_user_id_users'), 'users', ['reviewer_user_id'], ['id'])

    with op.batch_alter_table('violations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('case_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_violations_case_id'), ['case_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_violations_case_id_cases'), 'cases', ['case_id'], ['id'])

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_api_keys_role'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_api_keys_role'), f"role IN ({_roles(KEY_ROLES)})")

    _backfill_cases()
    for statement in AUDIT_APPEND_ONLY[bind.dialect.name]:
        op.execute(statement)
    if bind.dialect.name == "sqlite":
        problems = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
        if problems:
            raise RuntimeError(f"foreign key check failed after migration 0002: {problems[:5]}")


def _backfill_cases() -> None:
    """Open a case for every violation confirmed before this migration (one per spot and rule)."""
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, compound_id, camera_id, zone_id, rule, start_time FROM violations "
        "WHERE review_state = 'confirmed' ORDER BY start_time, id")).all()
    now = dt.datetime.now(dt.timezone.utc)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    case_of_spot: dict[tuple, int] = {}
    for violation_id, compound_id, camera_id, zone_id, rule, _start in rows:
        spot = (compound_id, camera_id, zone_id, rule)
        if spot not in case_of_spot:
            bind.execute(sa.text(
                "INSERT INTO cases (violation_id, compound_id, camera_id, zone_id, rule, state, created_at, updated_at) "
                "VALUES (:v, :c, :cam, :z, :r, 'open', :now, :now)"),
                {"v": violation_id, "c": compound_id, "cam": camera_id, "z": zone_id, "r": rule, "now": now})
            case_of_spot[spot] = bind.execute(sa.text("SELECT id FROM cases WHERE violation_id = :v"),
                                              {"v": violation_id}).scalar_one()
        bind.execute(sa.text("UPDATE violations SET case_id = :case WHERE id = :v"),
                     {"case": case_of_spot[spot], "v": violation_id})



def downgrade() -> None:
    for statement in AUDIT_DROP_GUARDS[op.get_bind().dialect.name]:
        op.execute(statement)
    op.execute("DELETE FROM api_keys WHERE role IN ('viewer', 'supervisor')")
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_api_keys_role'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_api_keys_role'), "role IN ('worker', 'reviewer', 'admin')")
    op.execute("DELETE FROM reviews WHERE reviewer_key_id IS NULL")
    with op.batch_alter_table('violations', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_violations_case_id_cases'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_violations_case_id'))
        batch_op.drop_column('case_id')
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claimed_by')

    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_reviews_reviewer_user_id_users'), type_='foreignkey')
        batch_op.alter_column('reviewer_key_id',
               existing_type=sa.VARCHAR(length=32),
               nullable=False)
        batch_op.drop_column('reviewer_user_id')

    with op.batch_alter_table('case_inspections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_inspections_case_id'))

    op.drop_table('case_inspections')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_spot')
        batch_op.drop_index('ix_cases_compound_state')

    op.drop_table('cases')
    op.drop_table('role_grants')
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_tokens_user_id'))

    op.drop_table('access_tokens')
    op.drop_table('users')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_entity')
        batch_op.drop_index('ix_audit_log_compound_at')

    op.drop_table('audit_log')
