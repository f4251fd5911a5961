"""Alembic migrations of the whysim catalog (run by `whysim.indexer.catalog.database.upgrade_schema`)."""
