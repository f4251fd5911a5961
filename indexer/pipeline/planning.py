"""Plan stage: compares a scan with the catalog (mark and sweep on path, size and mtime)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from whysim.indexer.catalog.repository import StoredFile
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.scanning import ScannedFile

SETTLED = {ImageStatus.INDEXED.value, ImageStatus.DUPLICATE.value, ImageStatus.FAILED.value}


@dataclass(frozen=True)
class WorkItem:
    """One file to read this run, with what the catalog knew about it before."""

    image_id: int
    path: str
    size: int
    mtime_ns: int
    previous_sha: str | None
    previous_status: str


@dataclass
class IndexPlan:
    new_files: list[ScannedFile] = field(default_factory=list)
    changed: list[WorkItem] = field(default_factory=list)
    unchanged: int = 0
    missing_ids: list[int] = field(default_factory=list)


def plan_collection(scanned: Iterable[ScannedFile], stored: dict[str, StoredFile]) -> IndexPlan:
    plan = IndexPlan()
    seen: set[str] = set()
    for file in scanned:
        seen.add(file.path)
        known = stored.get(file.path)
        if known is None:
            plan.new_files.append(file)
        elif known.status in SETTLED and known.size_bytes == file.size and known.mtime_ns == file.mtime_ns:
            plan.unchanged += 1
        else:
            plan.changed.append(WorkItem(known.id, file.path, file.size, file.mtime_ns, known.sha256, known.status))
    plan.missing_ids = [known.id for path, known in stored.items() if path not in seen]
    return plan
