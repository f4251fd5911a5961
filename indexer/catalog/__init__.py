"""Image metadata in a relational catalog (SQLite by default), schema managed by Alembic."""
