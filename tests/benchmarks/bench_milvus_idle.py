"""What a Milvus test server costs the machine while it waits, and what its time tick costs a search.

Starts the throwaway Milvus standalone server of the tests (tests/milvus_server.py) once per
time-tick interval, loads empty collections in steps and, at each step, reads the server's CPU
time (its process and children, from /proc) over a quiet window; then times strongly consistent
searches of a small collection, each of which waits for the server's next time tick. The suite
runs beside the server, so its idle CPU is taken from every other test; the figures chose the
test server's 20 ms tick and why each test drops its collections (tests/conftest.py).

    .venv/bin/python tests/benchmarks/bench_milvus_idle.py --ticks 20,50,200 --collections 0,10,30
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (the server) when run as a script

from milvus_server import start_milvus_server  # noqa: E402

DIM = 64
SEARCHES = 40


def process_tree_cpu_s(root_pid: int) -> float:
    """User + system seconds of `root_pid` and every process below it."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def make_collection(client, name: str) -> None:  # noqa: ANN001 - a pymilvus MilvusClient
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="IP", params={})
    client.create_collection(name, schema=schema, consistency_level="Strong")
    client.create_index(name, index, sync=False)
    client.load_collection(name)


def measure(tick_ms: int, steps: list[int], window_s: float) -> dict[str, float]:
    from pymilvus import MilvusClient

    server = start_milvus_server(settings={"timeTickInterval: 200": f"timeTickInterval: {tick_ms}"})
    figures: dict[str, float] = {}
    try:
        pid = server.server.server_proc.pid
        client = MilvusClient(uri=server.uri)
        rng = np.random.default_rng(0)
        make_collection(client, "probe")
        client.upsert("probe", [{"id": i, "vector": v} for i, v in enumerate(rng.random((200, DIM), dtype=np.float32))])
        seconds = []
        for vector in rng.random((SEARCHES, DIM), dtype=np.float32):
            start = time.perf_counter()
            client.search("probe", data=[vector], limit=10, consistency_level="Strong")
            seconds.append(time.perf_counter() - start)
        figures["search p50 ms"] = 1000 * statistics.median(seconds)
        client.drop_collection("probe")
        made = 0
        for step in steps:
            while made < step:
                make_collection(client, f"idle_{made}")
                made += 1
            time.sleep(2)  # the loads' own work settles
            before = process_tree_cpu_s(pid)
            time.sleep(window_s)
            figures[f"idle CPU % of a core, {step} collections"] = 100 * (process_tree_cpu_s(pid) - before) / window_s
        client.close()
    finally:
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", default="20,50,200", help="proxy.timeTickInterval values to compare, in ms")
    parser.add_argument("--collections", default="0,10,30", help="loaded collections at each idle reading")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of each idle reading")
    args = parser.parse_args()
    steps = sorted(int(n) for n in args.collections.split(","))
    rows = {int(tick): measure(int(tick), steps, args.window) for tick in args.ticks.split(",")}
    names = list(next(iter(rows.values())))
    print("| time tick | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for tick, figures in rows.items():
        print(f"| {tick} ms | " + " | ".join(f"{figures[name]:.0f}" for name in names) + " |")


if __name__ == "__main__":
    main()
