"""The README's Tour examples of `whysim search --id` work on the bundled samples: run as written
(options in brackets included), from a real process, they find hits."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, SAMPLES

SEARCH_BY_ID = re.compile(r"^\s*\.venv/bin/whysim (search --id [^#\n]*)", re.MULTILINE)


def whysim(*args: object) -> str:
    done = subprocess.run([sys.executable, "-c", "from whysim.webui.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_tours_search_examples_find_hits_on_the_bundled_samples(tmp_path: Path) -> None:
    examples = SEARCH_BY_ID.findall((REPO_ROOT / "README.md").read_text())
    assert examples
    data = tmp_path / "data"
    whysim("index", SAMPLES, "--data-dir", data, "--input-size", "64", "--no-progress")
    for example in examples:
        args = example.replace("[", "").replace("]", "").split()
        output = whysim(*args, "--data-dir", data)
        assert "no hits" not in output, example
        hits = [line for line in output.splitlines() if line.rstrip().endswith(".jpg")]  # a row ends in its path
        assert hits, (example, output)
