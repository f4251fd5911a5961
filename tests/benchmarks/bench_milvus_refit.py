"""How long a Milvus server takes to build and switch to the next generation, and where the time goes.

Indexes PHOTOS into a throwaway Milvus standalone server (tests/milvus_server.py, the `milvus`
package), then runs `whysim compact` (a refit into a new generation) several times in this
process and prints each run's seconds and its Milvus calls' seconds. whysim starts loading a new
collection in the background (`load_collection(_async=True)`) and waits for it only before the
alias swap; each round also runs a compact with that load made to wait at once (the baseline,
as before), alternating, and prints the ratio.

    .venv/bin/python tests/benchmarks/bench_milvus_refit.py ../shared/datasets/rooms --runs 3
"""
from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (the server) when run as a script

from scaling_equivalence import run_cli  # noqa: E402 - in this process, where the Milvus calls are timed

TIMED_CALLS = ("create_collection", "create_index", "load_collection", "upsert", "flush", "alter_alias",
               "create_alias", "drop_collection", "query", "query_iterator", "search")
REPORTED_MIN_S = 0.05


def time_milvus_calls(spent: dict[str, float], waits_for_loads: list[bool]) -> None:
    """Adds each MilvusClient call's seconds to `spent` under its name; while
    `waits_for_loads[0]`, every load waits until done (a background load is refused)."""
    from pymilvus import MilvusClient

    for name in TIMED_CALLS:
        original = getattr(MilvusClient, name)

        @functools.wraps(original)
        def timed(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            if _name == "load_collection" and waits_for_loads[0]:
                kwargs.pop("_async", None)
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - started

        setattr(MilvusClient, name, timed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--runs", type=int, default=3, help="compact runs (each builds a generation)")
    args = parser.parse_args()

    from milvus_server import start_milvus_server

    spent: dict[str, float] = defaultdict(float)
    waits_for_loads = [False]
    time_milvus_calls(spent, waits_for_loads)
    server = start_milvus_server()
    try:
        with tempfile.TemporaryDirectory(prefix="whysim-refit-") as work:
            data_dir = Path(work) / "data"
            started = time.perf_counter()
            run_cli("index", args.photos, "--data-dir", data_dir, "--no-progress",
                    "--vector-store", server.vector_store("refit"))
            print(f"index {args.photos}: {time.perf_counter() - started:.1f} s (first generation built)")
            ratios = []
            for run in range(1, args.runs + 1):
                seconds = {}
                for label, waits in (("baseline (load waited for at once)", True), ("whysim", False)):
                    waits_for_loads[0] = waits
                    spent.clear()
                    started = time.perf_counter()
                    summary = run_cli("compact", "--data-dir", data_dir).strip().splitlines()[-1]
                    seconds[waits] = time.perf_counter() - started
                    calls = ", ".join(f"{name} {s:.2f}" for name, s in sorted(spent.items(), key=lambda item: -item[1])
                                      if s >= REPORTED_MIN_S)
                    print(f"round {run}, {label}: {seconds[waits]:.2f} s ({summary}); Milvus calls, s: {calls}")
                ratios.append(seconds[True] / seconds[False])
            ratios.sort()
            print(f"whysim's refit vs the baseline: {ratios[len(ratios) // 2]:.2f}x as fast (median of {len(ratios)} "
                  f"rounds; {ratios[0]:.2f}-{ratios[-1]:.2f})")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
