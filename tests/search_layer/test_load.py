"""A short concurrent load on `whysim serve --production`: every request answers correctly.
Correctness under concurrency only; the figures come from tests/benchmarks/bench_load.py."""
from __future__ import annotations

import random

import pytest

from benchmarks.http_load import KINDS, LoadClient, Workload, run_load, whysim_server
from conftest import encode, make_picture
from search_layer.collection import PICTURE_SIZE, catalog_option

pytestmark = pytest.mark.slow


def test_concurrent_searches_uploads_and_explanations_have_no_errors(built_index, images) -> None:
    indexed = [info.id for info in images.values() if info.status == "indexed"]
    uploads = [encode(make_picture(2000 + seed, PICTURE_SIZE)) for seed in range(80)]  # more than the cache holds
    workload = Workload(indexed, uploads, k=5)
    with whysim_server(built_index.root, *catalog_option(built_index), "--production", "--threads", "4") as server:
        warm = LoadClient(server.port, workload, random.Random(0))
        for kind in KINDS:  # loads the model before the clock starts
            getattr(warm, kind)()
        result = run_load(server.port, workload, clients=4, seconds=5)
        health = server.get_json("/api/health")
    print(result.table())
    assert not result.errors, result.errors[:5]
    assert all(result.by_kind[kind].latencies_ms for kind in KINDS)
    assert health[0] == 200
