"""Runs every indexer benchmark on one dataset, in order: throughput, re-run, default-model study.

    .venv/bin/python tests/benchmarks/run_all.py [DATASET]      (or: make bench ARGS=DATASET)
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench_support import default_dataset, require_dataset

HERE = Path(__file__).resolve().parent


def run(script: str, *args: object) -> None:
    print(f"\n=== {script} {' '.join(map(str, args))}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *map(str, args)], check=True)


def main() -> None:
    dataset = require_dataset(Path(sys.argv[1]) if len(sys.argv) > 1 else default_dataset())
    with tempfile.TemporaryDirectory(prefix="whysim-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        run("bench_index_throughput.py", dataset, "--keep", data_dir)
        run("bench_rerun.py", dataset, "--data-dir", data_dir)
    run("eval_default_model.py", dataset)


if __name__ == "__main__":
    main()
