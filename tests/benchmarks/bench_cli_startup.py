"""How long `whysim` commands take to start: `--help`, `index --help` and `stats`, as wall time of
the installed console script, with `python -c pass` and `python -c "import torch"` of the same
interpreter as baselines in the same run. Run it on a quiet machine (under the heavy-jobs lock):

    flock /tmp/whysim-heavy.lock .venv/bin/python tests/benchmarks/bench_cli_startup.py [--runs 7] [--data-dir DIR]

`stats` reads DIR (default: a fresh index of the bundled samples/flowers, built once first).
Goals (issue 22): `--help` and `index --help` under 0.5 s, `stats` under 1.5 s.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WHYSIM = str(Path(sys.executable).with_name("whysim"))
GOALS = {"whysim --help": 0.5, "whysim index --help": 0.5, "whysim stats": 1.5}


def wall_seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None, help="an indexed data directory for `stats`")
    args = parser.parse_args()
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="whysim-startup-"))
        subprocess.run([WHYSIM, "index", str(REPO / "samples" / "flowers"), "--data-dir", str(data_dir),
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "whysim --help": [WHYSIM, "--help"],
        "whysim index --help": [WHYSIM, "index", "--help"],
        "whysim stats": [WHYSIM, "stats", "--data-dir", str(data_dir)],
    }
    for argv in commands.values():  # warm the file cache once
        wall_seconds(argv)
    print(f"{'command':<26} {'median s':>9} {'min s':>7}  goal", flush=True)
    for name, argv in commands.items():
        times = [wall_seconds(argv) for _ in range(args.runs)]
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"< {goal} s: {'met' if statistics.median(times) < goal else 'MISSED'}"
        print(f"{name:<26} {statistics.median(times):>9.3f} {min(times):>7.3f}  {verdict}", flush=True)


if __name__ == "__main__":
    main()
