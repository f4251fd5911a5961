"""The catalog schema: Alembic migrations and the ORM models must describe the same database."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from whysim.indexer.catalog.database import create_catalog_engine, open_catalog_engine, upgrade_schema
from whysim.indexer.catalog.schema import Base


def test_migrations_match_the_orm_models(tmp_path: Path) -> None:
    engine = create_catalog_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    upgrade_schema(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"render_as_batch": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)


def test_opening_twice_is_idempotent_and_sqlite_is_configured(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    open_catalog_engine(url).dispose()
    engine = open_catalog_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0001"]


def test_migrations_match_the_orm_models_on_postgresql(postgres_server) -> None:
    name = postgres_server.create_database()
    try:
        engine = open_catalog_engine(postgres_server.url(name))
        open_catalog_engine(postgres_server.url(name)).dispose()  # a second upgrade is a no-op
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0001"]
        assert differences == []
        engine.dispose()
    finally:
        postgres_server.drop_database(name)
