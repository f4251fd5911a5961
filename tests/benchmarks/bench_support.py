"""What the benchmark scripts share: locating the dataset and running the real `whysim` CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# ../shared/datasets/flowers from the main checkout; from a worktree under wt/ it is one level up.
DATASET_CANDIDATES = [REPO_ROOT.parent / "shared" / "datasets" / "flowers",
                      REPO_ROOT.parent.parent / "shared" / "datasets" / "flowers"]


def default_dataset() -> Path:
    for candidate in DATASET_CANDIDATES:
        if candidate.is_dir():
            return candidate
    return DATASET_CANDIDATES[0]


def require_dataset(path: Path) -> Path:
    if not path.is_dir():
        sys.exit(f"dataset not found: {path} (pass its path as the first argument)")
    return path


def run_whysim(*args: object) -> tuple[float, dict[str, Any]]:
    """Runs `whysim ARGS --json` in a fresh interpreter; returns (wall seconds, its JSON report)."""
    command = [sys.executable, "-c", "from webui.cli import main; main()", *map(str, args), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"whysim {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")
    return seconds, json.loads(done.stdout)
