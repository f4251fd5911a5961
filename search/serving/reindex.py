"""A re-index of the served collections started from the API: one at a time, in the background.

The job takes the data directory's writer lock before it answers, so a client learns at once
when `whysim index` (or another job) is already writing, and holds it until the last
collection is done. It runs the same incremental `IndexRun` as the CLI, with the model the
index was built with, so a crash or a server stop mid-way leaves what the indexer's own crash
safety guarantees. Decoding runs in the job's thread (no worker processes: forking a threaded
server is unsafe).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from whysim.indexer.datadir import DataDir, DataDirLocked
from whysim.indexer.pipeline.runner import IndexOptions, IndexRun
from whysim.indexer.runtime.choice import DEFAULT_RUNTIME

logger = logging.getLogger(__name__)


class ReindexBusy(RuntimeError):
    """A re-index (this server's, or another whysim process's) is already writing."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ReindexStatus:
    state: str = "idle"  # idle, running, succeeded, failed
    prune: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    collections: list[dict[str, Any]] = field(default_factory=list)  # {"root", "report"} or {"root", "error"}
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReindexJob:
    def __init__(self, datadir: DataDir, collection_roots: Callable[[], Iterable[str]], device: str = "cpu",
                 runtime: str = DEFAULT_RUNTIME) -> None:
        self.datadir = datadir
        self.collection_roots = collection_roots
        self.device = device
        self.runtime = runtime
        self._lock = threading.Lock()
        self._status = ReindexStatus()
        self._thread: threading.Thread | None = None

    def status(self) -> ReindexStatus:
        return self._status

    def start(self, prune: bool = False) -> ReindexStatus:
        """Starts the job; raises ReindexBusy when a writer is already at work."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise ReindexBusy("a re-index started by this server is still running")
            held = ExitStack()
            try:
                held.enter_context(self.datadir.writer_lock())
            except DataDirLocked as exc:
                raise ReindexBusy(str(exc)) from exc
            self._status = ReindexStatus(state="running", prune=prune, started_at=now_iso())
            self._thread = threading.Thread(target=self._run, args=(held, prune), name="whysim-reindex", daemon=True)
            self._thread.start()
            return self._status

    def wait(self, timeout: float | None = None) -> ReindexStatus:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._status

    def _run(self, held: ExitStack, prune: bool) -> None:
        options = IndexOptions(device=self.device, runtime=self.runtime, workers=0, prune=prune, progress=False)
        done: list[dict[str, Any]] = []
        try:
            with held:
                for root in sorted(self.collection_roots()):
                    done.append(self._index_one(Path(root), options))
                    self._status = replace(self._status, collections=list(done))
        except Exception as exc:  # noqa: BLE001 - reported in the job's status, never lost
            logger.exception("re-index failed")
            self._status = replace(self._status, state="failed", finished_at=now_iso(), collections=done,
                                   error=f"{type(exc).__name__}: {exc}")
            return
        failed = any("error" in entry for entry in done)
        self._status = replace(self._status, state="failed" if failed else "succeeded", finished_at=now_iso(),
                               collections=done, error="some collections could not be indexed" if failed else None)

    def _index_one(self, root: Path, options: IndexOptions) -> dict[str, Any]:
        if not root.is_dir():
            return {"root": str(root), "error": "the collection's directory is gone or not a directory"}
        report = IndexRun(root, self.datadir, options, requested_model=None).run_locked()
        return {"root": str(root), "report": report.to_dict()}
