"""What `whysim index` says about files it cannot read, and about a folder with no images, as a user
sees it from a real process: the summary names the broken files and why, on every run while they
stay broken; `whysim stats --failed` lists them all; an image-less folder is an error (exit 1)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import encode, make_picture

from whysim.indexer.pipeline.runner import FAILURES_LISTED


def whysim(*args: object, exit_code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", "from whysim.webui.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == exit_code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_unreadable_files_are_named_on_every_run_until_fixed(tmp_path: Path) -> None:
    root, data = tmp_path / "photos", tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "good.jpg").write_bytes(encode(make_picture(1)))
    broken = [root / f"broken_{index}.jpg" for index in range(FAILURES_LISTED + 1)]
    for path in broken:
        path.write_bytes(b"not a picture")
    (root / "sub" / "empty.png").write_bytes(b"")
    index = ("index", root, "--data-dir", data, "--input-size", "64", "--no-progress")

    first = whysim(*index).stdout
    assert "1 indexed" in first and f"{len(broken) + 1} failed" in first
    assert f"{len(broken) + 1} files cannot be read" in first
    assert f"{broken[0]}: not a recognised image format" in first
    assert "... and 2 more: `whysim stats --failed` lists them all" in first

    again = whysim(*index).stdout  # nothing changed: 0 failed this run, but the broken files are still named
    assert "0 failed" in again and f"{len(broken) + 1} files cannot be read" in again
    assert f"{broken[0]}: not a recognised image format" in again

    listed = whysim("stats", "--failed", "--data-dir", data).stdout
    assert f"{root / 'sub' / 'empty.png'}: empty file" in listed
    assert all(str(path) in listed for path in broken) and f"{len(broken) + 1} unreadable files" in listed

    for path in broken:
        path.unlink()
    (root / "sub" / "empty.png").write_bytes(encode(make_picture(2), "PNG"))
    fixed = json.loads(whysim(*index, "--prune", "--json").stdout)
    assert (fixed["indexed"], fixed["failing"], fixed["failures"]) == (1, 0, [])
    assert json.loads(whysim("stats", "--failed", "--json", "--data-dir", data).stdout) == {"failures": []}


def test_a_folder_without_images_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "readme.txt").write_text("no pictures here")
    done = whysim("index", root, "--data-dir", tmp_path / "data", exit_code=1)
    assert f"no images under {root}" in done.stderr and ".jpg" in done.stderr
