"""One writer at a time per catalog: the data directory's file lock, and on a shared
(PostgreSQL) catalog an advisory lock that also keeps out writers on other machines."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAISS_STORAGE
from whysim_cli import SMALL, whysim

from whysim.indexer.datadir import DataDir, DataDirLocked

HOLD_LOCK = """
import sys, time
from whysim.indexer.datadir import DataDir
with DataDir(__import__('pathlib').Path(sys.argv[1]), sys.argv[2] or None).writer_lock():
    print('locked', flush=True)
    time.sleep(600)
"""


def other_writer(datadir: DataDir, tmp_path: Path) -> DataDir:
    """Where a second writer works: another host's data directory when the catalog is shared,
    else the same directory (SQLite catalogs live inside it)."""
    if datadir.catalog_url_override:
        return DataDir(tmp_path / "other-host", datadir.catalog_url_override)
    return datadir


@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_a_second_writer_is_refused_until_the_first_is_done(datadir: DataDir, tmp_path: Path) -> None:
    second = other_writer(datadir, tmp_path)
    with datadir.writer_lock():
        with pytest.raises(DataDirLocked, match="another whysim process is writing"):
            with second.writer_lock():
                pass
    with second.writer_lock():  # free again
        pass


@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_index_says_another_writer_is_busy(datadir: DataDir, tmp_path: Path, make_collection) -> None:
    root = make_collection({"blobs": 2})
    second = other_writer(datadir, tmp_path)
    with datadir.writer_lock():
        refused = whysim("index", root, "--data-dir", second.root, *SMALL, exit_code=1)
    assert "another whysim process is writing" in refused.output and "Traceback" not in refused.output


@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_a_killed_writer_leaves_no_lock_behind(datadir: DataDir, tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(datadir.root), datadir.catalog_url_override or ""],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = other_writer(datadir, tmp_path)
        with pytest.raises(DataDirLocked):
            with second.writer_lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the server notices the dropped connection within moments
        try:
            with other_writer(datadir, tmp_path).writer_lock():
                break
        except DataDirLocked:
            assert time.monotonic() < deadline, "the killed writer's lock was never released"
            time.sleep(0.05)
