"""The SQLite catalog lets the server read while an indexer writes (WAL), and a second writer
waits for the lock (busy timeout) instead of failing with "database is locked"."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from whysim.indexer.catalog.database import SQLITE_BUSY_TIMEOUT_MS, open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.datadir import DataDir

pytestmark = pytest.mark.serial  # how long a writer waits for the lock


@pytest.fixture
def catalog_url() -> None:
    """SQLite only: WAL and the busy timeout are SQLite's; PostgreSQL has MVCC and row locks."""
    return None


@pytest.fixture
def catalog(datadir: DataDir) -> Iterator[Catalog]:
    engine = open_catalog_engine(datadir.ensure().catalog_url)
    opened = Catalog(engine)
    opened.set_setting("probe", "before")
    yield opened
    engine.dispose()


def other_process_connection(datadir: DataDir) -> sqlite3.Connection:
    """A plain sqlite3 connection, as another process (`whysim index`) would hold."""
    return sqlite3.connect(datadir.root / "catalog.sqlite3", timeout=0, isolation_level=None, check_same_thread=False)


def test_catalog_connections_use_wal_and_a_busy_timeout(catalog: Catalog, datadir: DataDir) -> None:
    with catalog.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS
    assert SQLITE_BUSY_TIMEOUT_MS >= 5000
    assert (datadir.root / "catalog.sqlite3-wal").exists()


def test_readers_see_the_last_commit_while_a_writer_holds_the_database(catalog: Catalog, datadir: DataDir) -> None:
    writer = other_process_connection(datadir)
    try:
        writer.execute("BEGIN EXCLUSIVE")  # in rollback-journal mode this would lock readers out
        writer.execute("UPDATE settings SET value = 'during' WHERE key = 'probe'")
        started = time.monotonic()
        assert catalog.get_setting("probe") == "before"
        assert time.monotonic() - started < SQLITE_BUSY_TIMEOUT_MS / 1000 / 2  # answered, not timed out
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert catalog.get_setting("probe") == "during"


def test_a_second_writer_waits_for_the_lock_instead_of_failing(catalog: Catalog, datadir: DataDir) -> None:
    writer = other_process_connection(datadir)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE settings SET value = 'first' WHERE key = 'probe'")
    release = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    release.start()
    try:
        started = time.monotonic()
        catalog.set_setting("probe", "second")  # blocked until the other writer commits
        waited = time.monotonic() - started
    finally:
        release.join()
        writer.close()
    assert waited >= 0.3
    assert catalog.get_setting("probe") == "second"
