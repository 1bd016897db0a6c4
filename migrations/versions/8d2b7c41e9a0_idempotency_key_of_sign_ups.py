"""Idempotency-Key of API sign-ups

Revision ID: 8d2b7c41e9a0
Revises: 6c1e5f0b2a47
Create Date: 2026-12-08 02:55:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8d2b7c41e9a0'
down_revision = '6c1e5f0b2a47'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('registrations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('idempotency_hash', sa.String(length=64), nullable=True))
        batch_op.create_index(
            'uq_registrations_event_idempotency_key', ['event_id', 'idempotency_key'],
            unique=True,
            sqlite_where=sa.text('idempotency_key IS NOT NULL'),
            postgresql_where=sa.text('idempotency_key IS NOT NULL'),
        )


def downgrade():
    with op.batch_alter_table('registrations', schema=None) as batch_op:
        batch_op.drop_index('uq_registrations_event_idempotency_key')
        batch_op.drop_column('idempotency_hash')
        batch_op.drop_column('idempotency_key')
