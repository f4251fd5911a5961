"""The CPU read stage: batches decoded in threads come out in order, equal to the PIL reader's."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tests.conftest import encode, make_picture
from whysim.indexer.pipeline.reading import ReadRequest, read_image_file
from whysim.indexer.pipeline.runner import indexing_workers
from whysim.indexer.pipeline.threaded_reading import ThreadedBatchReader

SIZE = 48
MAX_PIXELS = 10_000_000


@pytest.fixture
def requests(tmp_path: Path) -> list[ReadRequest]:
    found = []
    for number in range(11):
        path = tmp_path / f"{number:02d}.jpg"
        path.write_bytes(encode(make_picture(number, (90 + 7 * number, 60))) if number != 4 else b"not an image")
        found.append(ReadRequest(number + 1, path))
    found.append(ReadRequest(99, tmp_path / "vanished.jpg"))
    return found


@pytest.mark.parametrize("threads", [1, 3])
def test_batches_arrive_in_order_and_match_the_pil_reader(requests: list[ReadRequest], threads: int) -> None:
    reader = ThreadedBatchReader(requests, SIZE, batch_size=5, max_pixels=MAX_PIXELS, threads=threads)
    batches = list(reader)
    assert len(batches) == len(reader) == 3
    results = [result for batch in batches for result in batch.results]
    assert [r.image_id for r in results] == [r.image_id for r in requests]
    expected = [read_image_file(request, SIZE, MAX_PIXELS) for request in requests]
    for result, wanted in zip(results, expected):
        assert (result.sha256, result.width, result.height, result.error) == (
            wanted.sha256, wanted.width, wanted.height, wanted.error)
    assert results[4].error is not None and results[-1].error is not None
    pixels = torch.cat([batch.pixels for batch in batches if batch.pixels is not None])
    assert torch.equal(pixels, torch.stack([w.pixels for w in expected if w.pixels is not None]))


def test_stopping_early_leaves_no_thread_running(requests: list[ReadRequest]) -> None:
    reader = ThreadedBatchReader(requests, SIZE, batch_size=2, max_pixels=MAX_PIXELS)
    batches = iter(reader)
    next(batches)
    batches.close()  # what a for loop broken by Ctrl-C does
    assert not [t for t in threading.enumerate() if t.name.startswith("whysim-read")]
    assert len(list(reader)) == 6  # and the reader can run again


def test_worker_processes_only_feed_a_gpu() -> None:
    assert indexing_workers(None, "cpu") == 0
    assert indexing_workers(None, "cuda") >= 1
    assert indexing_workers(3, "cpu") == 3
