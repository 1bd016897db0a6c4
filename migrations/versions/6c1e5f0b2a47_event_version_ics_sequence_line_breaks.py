"""version and calendar SEQUENCE of events; line breaks in stored texts as LF

Revision ID: 6c1e5f0b2a47
Revises: 1ae8f372b416
Create Date: 2026-12-08 02:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '6c1e5f0b2a47'
down_revision = '1ae8f372b416'
branch_labels = None
depends_on = None

#: Texts that came from a browser's textarea with CRLF line breaks (shown as "Markt 1 , 04916").
_MULTI_LINE = ('description', 'venue_address', 'dial_in_phone', 'dial_in_instructions')


def upgrade():
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('ics_sequence', sa.Integer(), server_default='0', nullable=False))
    char = 'CHR' if op.get_bind().dialect.name == 'postgresql' else 'CHAR'
    cr, lf = f'{char}(13)', f'{char}(10)'
    for column in _MULTI_LINE:
        op.execute(
            f"UPDATE events SET {column} = REPLACE(REPLACE({column}, {cr} || {lf}, {lf}), {cr}, {lf}) "
            f"WHERE {column} LIKE '%' || {cr} || '%'"
        )


def downgrade():
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('ics_sequence')
        batch_op.drop_column('version')
