"""The writer lock of a shared catalog: a PostgreSQL advisory lock, held for a whole run.

The data directory's file lock (DataDir.writer_lock) only keeps out writers on the same
machine. A PostgreSQL catalog can be written from several machines (each with a Milvus
server for vectors), so there the lock must live in the database: a session-level advisory
lock on one dedicated connection. PostgreSQL releases it when that connection ends, so a
writer killed with -9 never leaves the catalog locked.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

# One key for every whysim writer of a catalog (crc32 of "whysim-writer"; any constant works).
WRITER_LOCK_KEY = 0x5F3C_82A1


class CatalogLocked(RuntimeError):
    """Another whysim process holds the catalog's writer lock."""


def has_shared_lock(url: str) -> bool:
    """Whether this catalog's backend has a lock of its own (SQLite relies on the file lock)."""
    return make_url(url).get_backend_name() == "postgresql"


@contextmanager
def catalog_writer_lock(url: str) -> Iterator[None]:
    """Holds the catalog's writer lock, or raises CatalogLocked at once when another writer has it."""
    if not has_shared_lock(url):
        yield
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            # Autocommit: the session-level lock must not keep a transaction open for hours.
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": WRITER_LOCK_KEY}).scalar()
            if not got:
                raise CatalogLocked(f"another whysim process is writing to the catalog at "
                                    f"{make_url(url).render_as_string(hide_password=True)}; wait for it to finish")
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": WRITER_LOCK_KEY})
    finally:
        engine.dispose()
