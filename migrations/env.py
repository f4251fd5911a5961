"""Alembic environment: uses the caller's connection when given one, else the configured URL."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from whysim.indexer.catalog.schema import Base
from whysim.indexer.datadir import resolve_data_dir

config = context.config
target_metadata = Base.metadata


def configured_url() -> str:
    return config.get_main_option("sqlalchemy.url") or resolve_data_dir().catalog_url


def run_offline() -> None:
    context.configure(url=configured_url(), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(configured_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
