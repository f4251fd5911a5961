"""Short Locust runs (the real CLI, headless, loopback) against `whysim serve --production`:
concurrent searches, uploads and explanations all answer correctly, and a client flooding
/api/explain gets 429s while the clients searching beside it get none.
Correctness only; the figures come from tests/benchmarks/bench_load.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.http_load import whysim_server
from benchmarks.locust_run import run_locust, write_workload

from search_layer.collection import catalog_option
from search_layer.conftest import ANY_CATALOG

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # p95 ratios under load


def indexed_ids(images) -> list[int]:
    return [info.id for info in images.values() if info.status == "indexed"]


def test_concurrent_searches_uploads_and_explanations_have_no_errors(built_index, images, collection,
                                                                     tmp_path: Path) -> None:
    workload = write_workload(tmp_path / "workload.json", indexed_ids(images),
                              sorted((collection / "blobs").glob("*.jpg")), k=5)
    with whysim_server(built_index.root, *catalog_option(built_index), "--production", "--threads", "4", "--no-rate-limits") as server:
        run = run_locust(server.base_url, workload, tmp_path / "mixed", users=4, seconds=5,
                         user_classes=("MixedUser",), max_requests=5000)
        health = server.get_json("/api/health")
    print(run.table())
    assert not run.failures, run.failures
    assert all(run.stats[name].requests > 0 for name in ("search by id", "search by upload", "explain"))
    assert run.stats["Aggregated"].failures == 0 and health[0] == 200


@ANY_CATALOG
def test_a_flooding_client_gets_429_and_the_searchers_beside_it_do_not(built_index, images, tmp_path: Path) -> None:
    workload = write_workload(tmp_path / "workload.json", indexed_ids(images), [], k=5)
    with whysim_server(built_index.root, *catalog_option(built_index), "--production", "--threads", "4", "--trusted-proxies", "1",
                       "--explain-limit", "2/minute") as server:
        server.get_json("/api/health")
        run = run_locust(server.base_url, workload, tmp_path / "fair", users=3, seconds=15,
                         user_classes=("Searcher", "Flooder"), max_requests=20000)
    print(run.table())
    flood = run.stats["flood explain"]
    # Two allowed per minute (a low limit, so that even a slow, busy machine floods past it).
    assert flood.requests > 2 and flood.failures == flood.requests - 2
    assert set(run.failures) == {("flood explain", "HTTP 429")}
    assert run.stats["search by id"].requests > 0 and run.stats["search by id"].failures == 0
