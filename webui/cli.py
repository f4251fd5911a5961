"""The `whysim` command: gathers the commands of every layer into one group."""
from __future__ import annotations

import click

from whysim.indexer.cli import COMMANDS as INDEXER_COMMANDS
from whysim.indexer.training.cli import COMMANDS as TRAINING_COMMANDS
from whysim.search.evaluation.cli import COMMANDS as EXPLAIN_COMMANDS
from whysim.search.serving.cli import COMMANDS as SEARCH_COMMANDS
from whysim.webui.commands import COMMANDS as WEBUI_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="whysim")
def cli() -> None:
    """Explainable image similarity search."""


for _command in [*INDEXER_COMMANDS, *TRAINING_COMMANDS, *SEARCH_COMMANDS, *EXPLAIN_COMMANDS, *WEBUI_COMMANDS]:
    cli.add_command(_command)


def main() -> None:
    cli()
