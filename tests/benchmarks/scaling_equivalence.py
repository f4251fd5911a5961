"""Same collection, four setups, same answers: `whysim index`, then every image searched by id.

(a) SQLite + FAISS with the built-in pipeline, (b) PostgreSQL + a Milvus server, (c) PostgreSQL
+ Milvus Lite, (d) the built-in storage with --engine ray. Each indexes the collection into its
own data directory through the real CLI; then every indexed image is a query (the search engine
`whysim serve` runs, by id, k hits), and each query's top-k paths, scores (within 1e-4) and
verdicts must agree with (a). Recall@1 by label (same room, same class) is printed per setup.
Used by tests/test_scaling_equivalence.py (generated images) and, run as a script, on a real
collection (under the heavy lock):

    python tests/benchmarks/scaling_equivalence.py ../shared/datasets/rooms --per-class 0
    python tests/benchmarks/scaling_equivalence.py ../shared/datasets/flowers --per-class 24

The script starts its own PostgreSQL server (tests/postgres_server.py), Milvus server
(tests/milvus_server.py) and a local Ray cluster on this machine's cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (the servers) when run as a script

from whysim.indexer.datadir import DataDir  # noqa: E402
from whysim.search.serving.engine import SearchEngine  # noqa: E402
from whysim.webui.cli import cli  # noqa: E402

SCORE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Setup:
    name: str
    datadir: DataDir
    options: tuple[str, ...]  # vector store and engine options of `whysim index`


@dataclass(frozen=True)
class Hit:
    path: str
    score: float
    verdict: str | None


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"whysim {' '.join(map(str, args[:2]))} failed: {result.output}")
    return result.stdout


def setups(work: Path, postgres_urls: tuple[str, str], milvus_uri: str, ray_address: str | None) -> list[Setup]:
    ray = ("--ray-address", ray_address) if ray_address else ()
    return [
        Setup("sqlite+faiss", DataDir(work / "a"), ()),
        Setup("postgresql+milvus-server", DataDir(work / "b", postgres_urls[0]), ("--vector-store", milvus_uri)),
        Setup("postgresql+milvus-lite", DataDir(work / "c", postgres_urls[1]),
              ("--vector-store", f"milvus:{work / 'c' / 'vectors.db'}")),
        Setup("ray", DataDir(work / "d"), ("--engine", "ray", *ray)),
    ]


def every_answer(datadir: DataDir, k: int) -> dict[str, list[Hit]]:
    """query path -> its top-k hits, every indexed image a query (by id, itself excluded)."""
    engine = SearchEngine.open(datadir)
    try:
        answers = {}
        for info in engine.catalog.list_images(limit=10**9):
            hits = engine.search_by_id(info.id, k).hits
            answers[info.path] = [Hit(hit.image.path, hit.score, hit.to_dict()["verdict"]) for hit in hits]
        return answers
    finally:
        engine.close()


def index_and_search(root: Path, work: Path, postgres_urls: tuple[str, str], milvus_uri: str,
                     ray_address: str | None, k: int = 5, index_options: tuple[str, ...] = (),
                     only: Collection[str] | None = None) -> dict[str, dict[str, list[Hit]]]:
    """setup name -> query path -> top-k hits, for every setup or those named in `only`; prints
    each setup's indexing report."""
    answers: dict[str, dict[str, list[Hit]]] = {}
    for setup in setups(work, postgres_urls, milvus_uri, ray_address):
        if only is not None and setup.name not in only:
            continue
        started = time.perf_counter()
        catalog = ("--catalog-url", setup.datadir.catalog_url_override) if setup.datadir.catalog_url_override else ()
        report = json.loads(run_cli("index", root, "--data-dir", setup.datadir.root, *catalog, *setup.options,
                                    *index_options, "--no-progress", "--json"))
        print(f"{setup.name}: {report['indexed']} indexed, {report['failed']} failed, {report['vectors']} vectors, "
              f"whitening {report['whitening']} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        answers[setup.name] = every_answer(setup.datadir, k)
    return answers


@dataclass(frozen=True)
class Agreement:
    same_paths: int  # queries whose top-k paths equal the reference's
    same_verdicts: int
    max_score_gap: float  # over queries with the same paths
    queries: int

    @property
    def whole(self) -> bool:
        return (self.same_paths == self.same_verdicts == self.queries
                and self.max_score_gap <= SCORE_TOLERANCE)


def agreement(found: dict[str, list[Hit]], reference: dict[str, list[Hit]]) -> Agreement:
    same_paths = same_verdicts = 0
    gap = 0.0
    for query, expected in reference.items():
        hits = found.get(query, [])
        if [h.path for h in hits] == [h.path for h in expected]:
            same_paths += 1
            gap = max([gap, *(abs(a.score - b.score) for a, b in zip(hits, expected))])
        same_verdicts += [h.verdict for h in hits] == [h.verdict for h in expected]
    return Agreement(same_paths, same_verdicts, gap, len(reference))


def recall_at_1(answers: dict[str, list[Hit]]) -> float:
    """Share of queries whose best hit has the query's label (its folder: a room, a class)."""
    def label(path: str) -> str:
        return path.rsplit("/", 1)[0]

    scored = [hits[0].path for hits in answers.values() if hits]
    return sum(label(q) == label(top) for q, top in zip(answers, scored)) / max(len(scored), 1)


def sample_collection(source: Path, target: Path, per_class: int) -> Path:
    """The first `per_class` files (by name) of each class folder, copied (0: all of them)."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir())[:per_class or None]:
            shutil.copyfile(path, target / folder.name / path.name)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", type=Path)
    parser.add_argument("--per-class", type=int, default=24, help="files per class folder (0: all)")
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()

    import ray
    from milvus_server import start_milvus_server
    from postgres_server import running_server

    from whysim.indexer.pipeline.ray_engine import RAY_ENV

    milvus = start_milvus_server()
    try:
        with tempfile.TemporaryDirectory(prefix="whysim-equivalence-") as scratch, running_server() as server:
            work = Path(scratch)
            root = sample_collection(args.collection, work / "sample", args.per_class)
            images = sum(1 for path in root.rglob("*") if path.is_file())
            os.environ.update(RAY_ENV)
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                urls = (server.url(server.create_database("server")), server.url(server.create_database("lite")))
                answers = index_and_search(root, work, urls, milvus.vector_store("equivalence"), None, args.k)
            finally:
                ray.shutdown()
    finally:
        milvus.stop()
    reference = answers["sqlite+faiss"]
    print(f"{args.collection.name}: {images} images, every one a query, top-{args.k}")
    agree = True
    for name, found in answers.items():
        check = agreement(found, reference)
        agree &= check.whole
        print(f"{name}: Recall@1 {recall_at_1(found):.3f}; {check.same_paths}/{check.queries} same top-{args.k} "
              f"paths, {check.same_verdicts}/{check.queries} same verdicts, largest score gap "
              f"{check.max_score_gap:.1e} (vs sqlite+faiss)")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
