"""Runs the `locust` CLI headless (tests/benchmarks/locustfile.py) against a loopback server and
reads back the CSV stats it saves: requests, failures and percentiles per request name.

Shared by bench_load.py (the figures) and the suite's short load tests (correctness only)."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


@dataclass(frozen=True)
class RequestStats:
    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float


@dataclass(frozen=True)
class LocustRun:
    stats: dict[str, RequestStats]  # by request name; "Aggregated" is the total
    failures: Counter[tuple[str, str]]  # (request name, message) -> count
    csv_prefix: Path
    output: str

    def table(self) -> str:
        lines = [f"{'request':<20}{'n':>8}{'failures':>10}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"]
        for row in self.stats.values():
            lines.append(f"{row.name:<20}{row.requests:>8}{row.failures:>10}{row.rps:>8.2f}"
                         f"{row.p50_ms:>9.0f}{row.p95_ms:>9.0f}{row.p99_ms:>9.0f}")
        return "\n".join(lines)


def write_workload(path: Path, image_ids: list[int], upload_files: list[Path], k: int = 10) -> Path:
    path.write_text(json.dumps({"image_ids": image_ids, "upload_files": [str(p) for p in upload_files], "k": k}))
    return path


def run_locust(base_url: str, workload: Path, csv_prefix: Path, users: int, seconds: float,
               user_classes: tuple[str, ...], max_requests: int = 0, timeout_s: float | None = None) -> LocustRun:
    """`users` Locust users (spawned at once) of `user_classes` for `seconds`, at most `max_requests`."""
    if not base_url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
        raise ValueError(f"load runs stay on loopback, not {base_url}")
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", base_url,
               "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds:g}s",
               "--stop-timeout", "30", "--csv", str(csv_prefix), "--only-summary", "--loglevel", "WARNING",
               "--workload", str(workload), "--max-requests", str(max_requests), *user_classes]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s or seconds + 120, check=False)
    output = done.stdout + done.stderr
    stats_file = Path(f"{csv_prefix}_stats.csv")
    if not stats_file.exists():
        raise RuntimeError(f"locust wrote no stats (exit {done.returncode}):\n{output[-3000:]}")
    return LocustRun(read_stats(stats_file), read_failures(Path(f"{csv_prefix}_failures.csv")), csv_prefix, output)


def _number(text: str) -> float:
    return float(text) if text not in ("", "N/A") else float("nan")


def read_stats(path: Path) -> dict[str, RequestStats]:
    found = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            found[row["Name"]] = RequestStats(row["Name"], int(row["Request Count"]), int(row["Failure Count"]),
                                              _number(row["50%"]), _number(row["95%"]), _number(row["99%"]),
                                              _number(row["Requests/s"]))
    return found


def read_failures(path: Path) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    if path.exists():
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                message = re.sub(r"^CatchResponseError\((['\"])(.*)\1\)$", r"\2", row["Error"])
                found[(row["Name"], message)] += int(row["Occurrences"])
    return found
