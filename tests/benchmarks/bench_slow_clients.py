"""Can one client address lock others out of `whysim serve --production`?

Indexes DATASET once (as bench_load.py does; cached in --work-dir), starts the production server,
and measures another address's health check and search by id (one of each every --interval s,
each on a new connection, from 127.0.0.2) for --seconds alone (baseline), then for --seconds
while 127.0.0.1 holds --connections connections of one kind, reopening any the server closes:
  idle   connected, never sends a byte
  slow   sends a partial request, then one header byte every --trickle-s seconds
Prints per phase: answers, errors, p50 / p95 / max latency and how many took over 1 s, and how
many of the attacker's connections the server refused or cut. Exits with 1 when another
client's request failed or took over 1 s.

    .venv/bin/python tests/benchmarks/bench_slow_clients.py [DATASET] [--connections 200] [--seconds 120]
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_load import build_index, indexed_ids, photo_files
from bench_search_latency import log
from bench_support import REPO_ROOT
from http_load import whysim_server
from slow_clients import PARTIAL_REQUEST, is_open, raw_request

OTHER = "127.0.0.2"
ATTACKER = "127.0.0.1"
SLOW_LIMIT_S = 1.0


class Attacker(threading.Thread):
    """Keeps `count` connections of one kind open from ATTACKER, reopening what the server closes."""

    def __init__(self, port: int, count: int, kind: str, trickle_s: float) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.kind, self.trickle_s = port, count, kind, trickle_s
        self.stop = threading.Event()
        self.opened = 0
        self.closed_by_server = 0

    def connect(self) -> socket.socket | None:
        try:
            connection = socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(ATTACKER, 0))
            if self.kind == "slow":
                connection.sendall(PARTIAL_REQUEST)
        except OSError:
            self.closed_by_server += 1
            return None
        self.opened += 1
        return connection

    def run(self) -> None:
        held: list[socket.socket] = []
        last_trickle = time.monotonic()
        while not self.stop.is_set():
            alive = [connection for connection in held if is_open(connection)]
            for connection in set(held) - set(alive):
                connection.close()
                self.closed_by_server += 1
            held = alive
            while len(held) < self.count and not self.stop.is_set():
                connection = self.connect()
                if connection is None:
                    break
                held.append(connection)
            if self.kind == "slow" and time.monotonic() - last_trickle >= self.trickle_s:
                for connection in held:
                    try:
                        connection.send(b"x")
                    except OSError:
                        pass
                last_trickle = time.monotonic()
            self.stop.wait(0.5)
        for connection in held:
            connection.close()


def probe(port: int, seconds: float, interval: float, image_id: int) -> dict[str, list[float | None]]:
    """Latencies (None: failed) of health checks and searches by id from OTHER."""
    search = json.dumps({"image_id": image_id, "k": 10}).encode()
    results: dict[str, list[float | None]] = {"health": [], "search by id": []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, method, path, body in (("health", "GET", "/api/health", b""),
                                         ("search by id", "POST", "/api/search", search)):
            started = time.perf_counter()
            try:
                status = raw_request(port, method, path, body, source=OTHER, timeout=10)[0]
                results[name].append(time.perf_counter() - started if status == 200 else None)
            except OSError:
                results[name].append(None)
        time.sleep(interval)
    return results


def summary(latencies: list[float | None]) -> dict[str, float]:
    answered = sorted(value * 1000 for value in latencies if value is not None)
    if not answered:
        return {"requests": len(latencies), "errors": len(latencies)}
    p95 = answered[min(len(answered) - 1, int(0.95 * len(answered)))]
    return {"requests": len(latencies), "errors": len(latencies) - len(answered),
            "p50_ms": round(statistics.median(answered), 1), "p95_ms": round(p95, 1), "max_ms": round(answered[-1], 1),
            "over_1s": sum(value > SLOW_LIMIT_S * 1000 for value in answered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=REPO_ROOT / "samples" / "flowers")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--baseline-seconds", type=float, default=20)
    parser.add_argument("--interval", type=float, default=0.25, help="pause between two probes of the other client")
    parser.add_argument("--trickle-s", type=float, default=5.0, help="the slow connections send a byte this often")
    parser.add_argument("--kinds", default="idle,slow")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "whysim-bench-load")
    args = parser.parse_args()
    data_dir = build_index(args.work_dir, photo_files(args.dataset)[:args.images], args.input_size)
    image_id = indexed_ids(data_dir)[0]
    figures: dict[str, object] = {}
    passed = True
    with whysim_server(data_dir, "--production", "--no-access-log") as server:
        baseline = probe(server.port, args.baseline_seconds, args.interval, image_id)
        figures["baseline"] = {name: summary(values) for name, values in baseline.items()}
        for kind in args.kinds.split(","):
            attacker = Attacker(server.port, args.connections, kind, args.trickle_s)
            attacker.start()
            time.sleep(2)  # let it fill its connections
            log(f"{kind}: {args.connections} connections from {ATTACKER}, probing from {OTHER} for {args.seconds:g} s")
            measured = probe(server.port, args.seconds, args.interval, image_id)
            attacker.stop.set()
            attacker.join()
            figures[kind] = {name: summary(values) for name, values in measured.items()}
            figures[kind]["attacker"] = {"connections_opened": attacker.opened,  # type: ignore[index]
                                         "closed_or_refused_by_server": attacker.closed_by_server}
            passed &= all(row.get("errors", 1) == 0 and row.get("over_1s", 1) == 0
                          for name, row in figures[kind].items() if name != "attacker")  # type: ignore[union-attr]
    for phase, rows in figures.items():
        print(f"\n{phase}")
        for name, row in rows.items():  # type: ignore[attr-defined]
            print(f"  {name:<14} " + "  ".join(f"{key}={value}" for key, value in row.items()))
    print(json.dumps(figures))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
