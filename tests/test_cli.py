"""`whysim index` / `whysim stats` as a user runs them: JSON output, model choices and their
errors, and a real process killed (SIGKILL) or interrupted (SIGINT) while it embeds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAISS_STORAGE
from whysim_cli import SMALL, catalog_query, index_json, snapshot, whysim, whysim_json

from whysim.indexer.datadir import DataDir

INDEX_KEYS = {"indexed", "unchanged", "duplicates", "failed", "removed", "missing", "repaired", "seconds",
              "images_per_second", "vectors", "index_type", "whitening", "model", "failing", "failures"}
STATS_KEYS = {"data_dir", "images", "vectors", "model", "model_card", "index_type", "whitening", "status",
              "collections", "vector_store", "disk_bytes", "collection_kind"}


def test_json_outputs_have_the_documented_keys(make_collection, datadir) -> None:
    empty = whysim_json("stats", "--data-dir", datadir.root)
    assert set(empty) == STATS_KEYS and empty["images"] == 0 and empty["model"] is None

    report = index_json(make_collection(), datadir)
    stats = whysim_json("stats", "--data-dir", datadir.root)

    assert set(report) == INDEX_KEYS
    assert report["indexed"] == 8 and report["images_per_second"] > 0 and report["model"].startswith("lite0@64/")
    assert set(stats) == STATS_KEYS
    assert stats["status"] == {"pending": 0, "indexed": 8, "duplicate": 0, "failed": 0}
    assert stats["model_card"]["input_size"] == 64 and stats["model"] == report["model"]


def test_summary_line_goes_to_stdout(make_collection, datadir) -> None:
    result = whysim("index", make_collection(), "--data-dir", datadir.root, *SMALL)
    assert result.stdout.startswith("8 indexed, 0 unchanged, 0 duplicate, 0 failed, 0 removed in ")
    assert "images/s" in result.stdout


def test_another_model_needs_rebuild_and_rebuild_reembeds_everything(make_collection, datadir) -> None:
    root = make_collection()
    index_json(root, datadir)

    refused = whysim("index", root, "--data-dir", datadir.root, *SMALL, "--pooling", "max", exit_code=1)
    assert "--rebuild" in refused.output and "pooling 'gem' -> 'max'" in refused.output
    assert "Traceback" not in refused.output
    assert snapshot(datadir).store.ids().size == 8  # the refused run changed nothing

    rebuilt = index_json(root, datadir, "--pooling", "max", "--rebuild")
    assert (rebuilt["indexed"], rebuilt["vectors"]) == (8, 8) and "/max" in rebuilt["model"]
    assert index_json(root, datadir)["indexed"] == 0  # the new model is now the index's model


@pytest.mark.parametrize("backbone", ["lite0", "mobilenet_v2"])
def test_random_weights_work_and_are_reproducible(make_collection, datadir, backbone) -> None:
    root = make_collection({"blobs": 2})
    report = index_json(root, datadir, "--backbone", backbone, "--weights", "none")
    assert report["indexed"] == 2 and report["model"].startswith(f"{backbone}@64/") and "none:" in report["model"]
    # Same request again: same seeded weights, so the index's model matches and nothing re-embeds.
    again = index_json(root, datadir, "--backbone", backbone, "--weights", "none")
    assert again["indexed"] == 0


def test_missing_pretrained_weights_fail_with_a_clear_message(make_collection, datadir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    result = whysim("index", make_collection(), "--data-dir", datadir.root, *SMALL, "--backbone", "resnet50",
                    exit_code=1)
    assert "no ImageNet weights for resnet50" in result.output and "--weights PATH" in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------- real processes


def start_indexing(root: Path, datadir: DataDir) -> subprocess.Popen[str]:
    """A `whysim index` process, slowed down (large input, tiny batches and chunks) so
    that it can be stopped mid-run; it leads its own process group, with its reader worker."""
    command = [sys.executable, "-c", "from whysim.webui.cli import main; main()", "index", str(root),
               "--data-dir", str(datadir.root), "--input-size", "320", "--batch-size", "2",
               "--chunk-size", "2", "--workers", "1", "--no-progress"]
    # A harness that starts the tests in the background (a non-interactive shell's `cmd &`) hands
    # them SIGINT ignored, and Python then never turns SIGINT into KeyboardInterrupt: restore it.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def indexed_rows(datadir: DataDir) -> int:
    rows = catalog_query(datadir, "SELECT count(*) FROM images WHERE status = 'indexed'")
    return rows[0][0] if rows else 0


def stop_mid_run(process: subprocess.Popen[str], datadir: DataDir, signum: int, after: int) -> int:
    """Sends `signum` to the process group once `after` images are committed; returns that count."""
    deadline = time.monotonic() + 120
    while (done := indexed_rows(datadir)) < after:
        assert process.poll() is None, f"whysim exited early: {process.communicate()[1]}"
        assert time.monotonic() < deadline, "whysim made no progress"
        time.sleep(0.02)
    os.killpg(process.pid, signum)
    return done


def resume(root: Path, datadir: DataDir) -> dict[str, object]:
    """The same command again, in-process (no model options: the index's model is used)."""
    return whysim_json("index", root, "--data-dir", datadir.root, "--workers", "0", "--no-progress")


@pytest.fixture
def thirty_images(make_collection) -> Path:
    return make_collection({"blobs": 15, "stripes": 15})


# PostgreSQL + Milvus: tests/test_crash_consistency.py kills it at many more points.
@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_kill_9_mid_run_then_resume(thirty_images, datadir) -> None:
    process = start_indexing(thirty_images, datadir)
    stop_mid_run(process, datadir, signal.SIGKILL, after=2)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    committed = indexed_rows(datadir)
    assert 2 <= committed < 30, "the kill must land mid-run"

    report = resume(thirty_images, datadir)

    assert report["indexed"] == 30 - committed and report["unchanged"] == committed
    state = snapshot(datadir)
    state.assert_consistent()  # catalog ids == FAISS ids, each once, no orphans
    assert state.by_status("indexed") == set(state.images) and len(state.images) == 30
    assert not list(datadir.root.glob(".*.tmp")), "a half-written index file was left behind"


def test_ctrl_c_saves_progress_and_exits_cleanly(thirty_images, datadir) -> None:
    process = start_indexing(thirty_images, datadir)
    stop_mid_run(process, datadir, signal.SIGINT, after=2)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "interrupted:" in stderr and "rerun the same command to continue" in stderr
    assert "Traceback" not in stderr
    state = snapshot(datadir)
    state.assert_consistent()
    assert 2 <= len(state.by_status("indexed")) < 30

    report = resume(thirty_images, datadir)
    assert report["indexed"] + report["unchanged"] == 30
    assert snapshot(datadir).by_status("indexed") == set(snapshot(datadir).images)
