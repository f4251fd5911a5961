"""initial catalog schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('collections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('root', sa.String(length=4096), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections')),
    sa.UniqueConstraint('root', name=op.f('uq_collections_root'))
    )
    op.create_table('index_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('backbone', sa.String(length=64), nullable=False),
    sa.Column('weights_digest', sa.String(length=64), nullable=False),
    sa.Column('input_size', sa.Integer(), nullable=False),
    sa.Column('pooling', sa.String(length=16), nullable=False),
    sa.Column('dimension', sa.Integer(), nullable=False),
    sa.Column('card_json', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_index_models'))
    )
    with op.batch_alter_table('index_models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_index_models_active'), ['active'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('collection_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=4096), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('label', sa.String(length=512), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duplicate_of_id', sa.Integer(), nullable=True),
    sa.Column('indexed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], name=op.f('fk_images_collection_id_collections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['duplicate_of_id'], ['images.id'], name=op.f('fk_images_duplicate_of_id_images'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
    sa.UniqueConstraint('collection_id', 'path', name='uq_images_collection_path'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_images_collection_id'), ['collection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_images_duplicate_of_id'), ['duplicate_of_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_images_label'), ['label'], unique=False)
        batch_op.create_index(batch_op.f('ix_images_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_images_status'), ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_images_status'))
        batch_op.drop_index(batch_op.f('ix_images_sha256'))
        batch_op.drop_index(batch_op.f('ix_images_label'))
        batch_op.drop_index(batch_op.f('ix_images_duplicate_of_id'))
        batch_op.drop_index(batch_op.f('ix_images_collection_id'))

    op.drop_table('images')
    op.drop_table('settings')
    with op.batch_alter_table('index_models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_index_models_active'))

    op.drop_table('index_models')
    op.drop_table('collections')
