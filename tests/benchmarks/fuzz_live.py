"""Fuzzes a live `whysim serve --production` from its own OpenAPI document with the schemathesis
CLI and every check (`--checks all`): examples, coverage, fuzzing and stateful phases.

Indexes --dataset (default: the bundled samples/flowers, cached as bench_load.py caches it), starts
the server with an admin token (from a file: never on the command line) on a free loopback port,
and runs

    schemathesis --config-file tests/benchmarks/schemathesis.toml run URL/api/openapi.json --checks all

The document carries example values (an indexed query and hit) so that the explain and overlay
operations reach real pairs; tests/benchmarks/schemathesis.toml sends the admin token. Prints
schemathesis's report and, from the server's access log, the answers per route and status.
Exits with schemathesis's status. With --no-token the server has no admin token (read-only: the
admin routes answer 403) and no rate limits, and schemathesis sends an empty bearer token.

    .venv/bin/python tests/benchmarks/fuzz_live.py [--seed 1] [--dataset DIR] [--no-token]
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench_load import SAMPLES, build_index, photo_files
from http_load import whysim_server

CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
ACCESS_LINE = re.compile(r"route=(\S+) path=\S+ status=(\d+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=SAMPLES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-token", action="store_true", help="a read-only server, without rate limits")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "whysim-bench-load")
    args = parser.parse_args()

    data_dir = build_index(args.work_dir, photo_files(args.dataset)[:600], 224)
    token = "" if args.no_token else secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="whysim-fuzz-") as scratch:
        copy = Path(scratch) / "data"  # the fuzzer starts re-indexes: not on the cached index
        shutil.copytree(data_dir, copy)
        token_file = Path(scratch) / "admin-token"
        token_file.write_text(token)
        access = ("--no-rate-limits",) if args.no_token else ("--admin-token-file", str(token_file))
        with whysim_server(copy, "--production", *access) as server:
            command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
                       f"{server.base_url}/api/openapi.json", "--checks", "all", "--seed", str(args.seed)]
            print("$ WHYSIM_ADMIN_TOKEN=... " + " ".join(["schemathesis", *command[3:]]), flush=True)
            done = subprocess.run(command, env={**os.environ, "WHYSIM_ADMIN_TOKEN": token}, check=False)
            answers = Counter(ACCESS_LINE.findall(server.log()))
    print("\nanswers by route and status (server access log):")
    for (route, status), count in sorted(answers.items()):
        print(f"  {route:<40} {status}  {count:>5}")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
