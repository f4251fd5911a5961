"""SQLite + FAISS, PostgreSQL + a Milvus server, PostgreSQL + Milvus Lite and --engine ray index the
same generated, instance-level (so whitened) collection into the same answers: every image's top-5
paths, scores within 1e-4 and verdicts agree."""
from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.scaling_equivalence import agreement, index_and_search
from search_layer.collection import SMALL_MODEL
from test_whitening import add_pictures

from whysim.indexer.model.whitening import MIN_VECTORS
from whysim.indexer.vectors import VectorStore

pytestmark = pytest.mark.slow


def test_four_setups_give_the_same_answers(tmp_path: Path, postgres_server, milvus_server, ray_cluster: str) -> None:
    root = tmp_path / "photos"
    add_pictures(root, 0, MIN_VECTORS + 6)
    urls = tuple(postgres_server.url(postgres_server.create_database("equivalence")) for _ in range(2))

    answers = index_and_search(root, tmp_path / "work", urls, milvus_server.vector_store("equivalence"),
                               ray_cluster, k=5, index_options=tuple(SMALL_MODEL))

    assert VectorStore.load(tmp_path / "work" / "a" / "vectors.faiss").whitening is not None
    reference = answers["sqlite+faiss"]
    assert set(answers) == {"sqlite+faiss", "postgresql+milvus-server", "postgresql+milvus-lite", "ray"}
    assert len(reference) == MIN_VECTORS + 6 and all(len(hits) == 5 for hits in reference.values())
    for name, found in answers.items():
        assert agreement(found, reference).whole, (name, agreement(found, reference))
