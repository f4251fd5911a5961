"""`whysim --help` and `whysim CMD --help` start without the heavy libraries: each command's module is
imported when that command runs (webui/lazy_group.py), and command modules import torch, FAISS,
Flask and pydantic inside the commands. Times are measured by tests/benchmarks/bench_cli_startup.py."""
from __future__ import annotations

import subprocess
import sys

import click

from whysim.webui.cli import COMMANDS, cli

HEAVY = ("torch", "faiss", "flask", "pydantic", "sqlalchemy")
PROBE = """
import sys
from whysim.webui.cli import main
sys.argv = ["whysim", *{args!r}]
try:
    main()
except SystemExit:
    pass
print("LOADED", *[name for name in {heavy!r} if name in sys.modules])
"""


def loaded_after(*args: str) -> tuple[str, set[str]]:
    """The output of `whysim ARGS` in a fresh interpreter, and which heavy libraries it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args), heavy=HEAVY)],
                          capture_output=True, text=True, timeout=120, check=True)
    output, _, loaded = done.stdout.rpartition("LOADED")
    return output, set(loaded.split())


def test_group_help_lists_every_command_without_importing_any() -> None:
    output, loaded = loaded_after("--help")
    assert loaded == set()
    assert "torch" not in loaded
    for name, lazy in COMMANDS.items():
        assert name in output and lazy.summary.split()[0] in output


def test_index_help_loads_no_model_index_or_web_framework() -> None:
    output, loaded = loaded_after("index", "--help")
    assert "Usage: whysim index" in output and "--index-type [auto|flat|hnsw|ivfpq]" in output
    assert not loaded & {"torch", "faiss", "flask", "pydantic"}, loaded


def test_stats_and_compact_work_on_the_index_without_torch(make_collection, tmp_path) -> None:
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-c", "from whysim.webui.cli import main; main()", "index", str(make_collection()),
                    "--data-dir", str(data), "--input-size", "64", "--no-progress"], check=True, timeout=300,
                   capture_output=True)
    output, loaded = loaded_after("stats", "--data-dir", str(data))
    assert "vectors: 8 in a flat index" in output
    assert "torch" not in loaded
    # compact re-whitens and rebuilds stored vectors: no model (the kill tests start it many times)
    output, loaded = loaded_after("compact", "--data-dir", str(data))
    assert "rebuilt 8 vectors into a flat index" in output
    assert "torch" not in loaded


def test_every_lazy_command_resolves_to_the_command_of_that_name() -> None:
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert isinstance(command, click.Command) and command.name == name
    assert cli.get_command(context, "no-such-command") is None
