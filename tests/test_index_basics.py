"""End-to-end `whysim index` / `whysim stats` through the real CLI, model, SQLite and FAISS."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import ALL_STORAGE

from whysim.webui.cli import cli

SMALL = ["--input-size", "64", "--workers", "0", "--no-progress"]


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("storage", ALL_STORAGE, indirect=True)
def test_index_then_rerun_embeds_nothing(make_collection, datadir) -> None:
    root = make_collection()
    first = run("index", str(root), "--data-dir", str(datadir.root), "--json", *SMALL)
    assert first["indexed"] == 8 and first["failed"] == 0 and first["vectors"] == 8
    second = run("index", str(root), "--data-dir", str(datadir.root), "--json", "--no-progress")
    assert second["indexed"] == 0 and second["unchanged"] == 8
    stats = run("stats", "--data-dir", str(datadir.root), "--json")
    assert stats["images"] == 8 and stats["vectors"] == 8 and stats["index_type"] == "flat"
    assert stats["model"].startswith("lite0@64")
