"""SQLite + FAISS, PostgreSQL + Milvus Lite and --engine ray index the same generated
collection into the same answers: every query's top-5 paths from `whysim search --json` agree."""
from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.scaling_equivalence import top_paths
from conftest import encode, make_picture
from search_layer.collection import SMALL_MODEL

pytestmark = pytest.mark.slow


def test_three_setups_give_the_same_top_5(tmp_path: Path, postgres_server, ray_cluster: str) -> None:
    root = tmp_path / "photos"
    for seed in range(24):
        kind = "stripes" if seed % 3 == 0 else "blobs"
        (root / kind).mkdir(parents=True, exist_ok=True)
        (root / kind / f"{seed:03d}.jpg").write_bytes(encode(make_picture(500 + seed, kind=kind)))
    queries = sorted(root.rglob("*.jpg"))[::4]
    url = postgres_server.url(postgres_server.create_database("equivalence"))

    answers = top_paths(root, tmp_path / "work", url, ray_cluster, queries, k=5, index_options=tuple(SMALL_MODEL))

    reference = answers["sqlite+faiss"]
    assert set(answers) == {"sqlite+faiss", "postgresql+milvus", "ray"}
    assert all(len(hits) == 5 for hits in reference.values())
    for name, found in answers.items():
        assert found == reference, name
