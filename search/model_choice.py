"""Which model a command-line explanation uses: a checkpoint, explicit options, the index's model, or the default."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.cli import active_model_card
from indexer.datadir import DataDir
from indexer.model.branch import SiameseBranch
from indexer.model.loading import ModelRequest, build_branch, load_checkpoint, load_for_card


def choose_branch(datadir: DataDir, checkpoint: Path | None, explicit: dict[str, Any]) -> SiameseBranch:
    """`--model` wins; then explicit model options (over the defaults); then the index's model.

    Explaining with the index's model by default means `whysim explain` agrees with the
    scores and threshold `whysim search` shows for the same data directory.
    """
    if checkpoint is not None:
        return load_checkpoint(checkpoint)
    if not explicit:
        card = active_model_card(datadir)
        if card is not None:
            return load_for_card(card, datadir.models_dir)
    return build_branch(ModelRequest(**explicit))
