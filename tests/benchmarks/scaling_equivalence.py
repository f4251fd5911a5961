"""Same collection, three setups, same answers: `whysim index` then `whysim search --json`.

(a) SQLite + FAISS with the built-in pipeline, (b) PostgreSQL + Milvus Lite, (c) the
built-in storage with --engine ray. Each indexes the collection into its own data
directory through the real CLI; then each query image's top-k paths must agree. Used by
tests/test_scaling_equivalence.py (generated images) and, run as a script, on a sample of
a real collection:

    python tests/benchmarks/scaling_equivalence.py ../shared/datasets/flowers --per-class 24

The script starts its own PostgreSQL server (tests/postgres_server.py) and a local Ray
cluster on this machine's cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (postgres_server) when run as a script

from whysim.webui.cli import cli  # noqa: E402


@dataclass(frozen=True)
class Setup:
    name: str
    options: tuple[str, ...]  # catalog, vector store and engine options of `whysim index`
    search_options: tuple[str, ...]  # the same data directory for `whysim search`


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"whysim {' '.join(map(str, args[:2]))} failed: {result.output}")
    return result.stdout


def setups(work: Path, postgres_url: str, ray_address: str | None) -> list[Setup]:
    ray = ("--ray-address", ray_address) if ray_address else ()
    return [
        Setup("sqlite+faiss", ("--data-dir", str(work / "a")), ("--data-dir", str(work / "a"))),
        Setup("postgresql+milvus", ("--data-dir", str(work / "b"), "--catalog-url", postgres_url,
                                    "--vector-store", f"milvus:{work / 'b' / 'vectors.db'}"),
              ("--data-dir", str(work / "b"), "--catalog-url", postgres_url)),
        Setup("ray", ("--data-dir", str(work / "c"), "--engine", "ray", *ray), ("--data-dir", str(work / "c"))),
    ]


def top_paths(root: Path, work: Path, postgres_url: str, ray_address: str | None, queries: list[Path],
              k: int = 5, index_options: tuple[str, ...] = ()) -> dict[str, dict[str, list[str]]]:
    """setup name -> query path -> the top-k hit paths; prints each setup's indexing time."""
    answers: dict[str, dict[str, list[str]]] = {}
    for setup in setups(work, postgres_url, ray_address):
        started = time.perf_counter()
        report = json.loads(run_cli("index", root, *setup.options, *index_options, "--no-progress", "--json"))
        print(f"{setup.name}: {report['indexed']} indexed, {report['failed']} failed, "
              f"{report['vectors']} vectors in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        answers[setup.name] = {}
        for query in queries:
            found = json.loads(run_cli("search", query, *setup.search_options, "-k", str(k), "--json"))
            answers[setup.name][query.relative_to(root).as_posix()] = [hit["path"] for hit in found["hits"]]
    return answers


def sample_collection(source: Path, target: Path, per_class: int) -> Path:
    """The first `per_class` files (by name) of each class folder, copied."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir())[:per_class]:
            shutil.copyfile(path, target / folder.name / path.name)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", type=Path)
    parser.add_argument("--per-class", type=int, default=24)
    parser.add_argument("--queries-per-class", type=int, default=4)
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()

    import ray
    from postgres_server import running_server

    from whysim.indexer.pipeline.ray_engine import QUIET_RAY_ENV

    with tempfile.TemporaryDirectory(prefix="whysim-equivalence-") as scratch, running_server() as server:
        work = Path(scratch)
        root = sample_collection(args.collection, work / "sample", args.per_class)
        queries = [path for folder in sorted(root.iterdir())
                   for path in sorted(folder.iterdir())[:args.queries_per_class]]
        images = sum(1 for path in root.rglob("*") if path.is_file())
        os.environ.update(QUIET_RAY_ENV)
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            answers = top_paths(root, work, server.url(server.create_database("equivalence")), None, queries, args.k)
        finally:
            ray.shutdown()
    reference = answers["sqlite+faiss"]
    print(f"{len(queries)} queries, top-{args.k}, {images} images")
    agree = True
    for name, found in answers.items():
        same = sum(found[q] == reference[q] for q in reference)
        agree &= same == len(reference)
        print(f"{name}: {same}/{len(reference)} queries with the same top-{args.k} paths as sqlite+faiss")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
