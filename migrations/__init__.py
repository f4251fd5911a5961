"""Alembic migrations of the whysim catalog (run by `indexer.catalog.database.upgrade_schema`)."""
