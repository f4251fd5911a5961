"""The `whysim` command: gathers the commands of every layer into one group, loaded on demand."""
from __future__ import annotations

import click

from whysim.webui.lazy_group import LazyCommand, LazyGroup

COMMANDS = {
    "index": LazyCommand("whysim.indexer.cli:index_command",
                         "Embed a folder's images into the index (incremental)."),
    "stats": LazyCommand("whysim.indexer.cli:stats_command",
                         "Counts, model, index type; --failed lists bad files."),
    "compact": LazyCommand("whysim.indexer.cli:compact_command",
                           "Rebuild the vector index without re-embedding."),
    "calibrate": LazyCommand("whysim.indexer.cli:calibrate_command",
                             "Fit the similar/dissimilar cut on labelled images."),
    "train": LazyCommand("whysim.indexer.training.cli:train_command",
                         "Fine-tune the Siamese branch (a class per folder)."),
    "evaluate": LazyCommand("whysim.indexer.training.cli:evaluate_command",
                            "Retrieval, pair and verdict metrics on labelled images."),
    "search": LazyCommand("whysim.search.serving.cli:search_command",
                          "The indexed images most similar to a photo."),
    "explain": LazyCommand("whysim.search.evaluation.cli:explain_command",
                           "Similarity, verdict and Grad-CAM panel for two images."),
    "evaluate-explanations": LazyCommand("whysim.search.evaluation.cli:evaluate_explanations_command",
                                         "Faithfulness of the maps on labelled pairs."),
    "serve": LazyCommand("whysim.webui.commands:serve_command",
                         "Serve the search page and the JSON API."),
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="whysim")
def cli() -> None:
    """Explainable image similarity search."""


def main() -> None:
    cli()
