"""SQLite + FAISS, PostgreSQL + a Milvus server, PostgreSQL + Milvus Lite and --engine ray index the
same generated, instance-level (so whitened) collection into the same answers: every image's top-5
paths, scores within 1e-4 and verdicts agree. The Milvus server is checked in a test of its own,
so a machine that cannot run it still checks the other three."""
from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.scaling_equivalence import agreement, index_and_search
from search_layer.collection import SMALL_MODEL
from test_whitening import add_pictures

from whysim.indexer.model.whitening import MIN_VECTORS
from whysim.indexer.vectors import VectorStore

pytestmark = pytest.mark.slow

REFERENCE = "sqlite+faiss"


def answers_of(setups: set[str], tmp_path: Path, postgres_server, milvus_uri: str = "",
               ray_address: str | None = None) -> dict:
    root = tmp_path / "photos"
    add_pictures(root, 0, MIN_VECTORS + 6)
    url = postgres_server.url(postgres_server.create_database("equivalence"))
    answers = index_and_search(root, tmp_path / "work", (url, url), milvus_uri, ray_address, k=5,
                               index_options=tuple(SMALL_MODEL), only={REFERENCE, *setups})
    assert set(answers) == {REFERENCE, *setups}
    assert VectorStore.load(tmp_path / "work" / "a" / "vectors.faiss").whitening is not None
    reference = answers[REFERENCE]
    assert len(reference) == MIN_VECTORS + 6 and all(len(hits) == 5 for hits in reference.values())
    return answers


def test_milvus_lite_and_ray_give_the_answers_of_the_default(tmp_path: Path, postgres_server, ray_cluster: str) -> None:
    answers = answers_of({"postgresql+milvus-lite", "ray"}, tmp_path, postgres_server, ray_address=ray_cluster)
    for name, found in answers.items():
        assert agreement(found, answers[REFERENCE]).whole, (name, agreement(found, answers[REFERENCE]))


def test_a_milvus_server_gives_the_answers_of_the_default(tmp_path: Path, postgres_server, milvus_server) -> None:
    answers = answers_of({"postgresql+milvus-server"}, tmp_path, postgres_server,
                         milvus_uri=milvus_server.vector_store("equivalence"))
    found = answers["postgresql+milvus-server"]
    assert agreement(found, answers[REFERENCE]).whole, agreement(found, answers[REFERENCE])
