"""Sorts one batch of read results into the writer's outcomes: unchanged, duplicate, failed, indexed.

Shared by the built-in loop and the Ray engine: they differ only in where vectors come from
(`embed` gets the rows of the error-free results that need a vector, in order).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.pipeline.planning import WorkItem
from whysim.indexer.pipeline.reading import ReadResult
from whysim.indexer.pipeline.writing import ChunkWriter


def record_outcomes(results: Sequence[ReadResult], embed: Callable[[list[int]], np.ndarray],
                    by_id: dict[int, WorkItem], writer: ChunkWriter, catalog: Catalog) -> None:
    ok = [r for r in results if r.error is None]
    known = catalog.canonical_by_sha(r.sha256 for r in ok if r.sha256)
    keep_rows: list[int] = []
    to_embed = []
    for row, result in enumerate(ok):
        item = by_id[result.image_id]
        sha = result.sha256 or ""
        if (sha == item.previous_sha and item.previous_status == ImageStatus.INDEXED.value):
            writer.unchanged(item)
            continue
        canonical = writer.shas_this_run.get(sha) or known.get(sha)
        if canonical is not None and canonical != item.image_id:
            writer.duplicate(item, result, canonical)
            continue
        writer.shas_this_run[sha] = item.image_id  # later copies in this batch are duplicates
        keep_rows.append(row)
        to_embed.append((item, result))
    for result in results:
        if result.error is not None:
            writer.failed(by_id[result.image_id], result)
    if to_embed:
        vectors = embed(keep_rows)
        if writer.store.whitening is not None:  # the index's transform, for every new vector
            vectors = writer.store.whitening.apply(vectors)
        for (item, result), vector in zip(to_embed, vectors, strict=True):
            writer.indexed(item, result, vector)
