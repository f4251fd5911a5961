"""Which model a command-line explanation uses: a checkpoint, explicit options, the index's model, or the default."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from whysim.indexer.calibration import stored_rule
from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.cli_support import active_model_card
from whysim.indexer.datadir import DataDir
from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.model.loading import ModelRequest, build_branch, load_checkpoint, load_for_card
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.vector_stores.choice import open_location
from whysim.indexer.verdicts import Cohort, VerdictJudge


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


def collection_context(datadir: DataDir, branch: SiameseBranch) -> tuple[Whitening | None, VerdictJudge | None]:
    """The whitening and verdict judge of the data directory's index when it was built with this
    branch's model, so `whysim explain` scores and judges a pair as search would; else (None, None):
    raw cosine and the model card's cut."""
    card = active_model_card(datadir)
    if card is None or card.identity() != branch.card.identity():
        return None, None
    engine = open_catalog_engine(datadir.catalog_url)
    try:
        catalog = Catalog(engine)
        location = open_location(datadir, catalog)
        try:
            store = location.load() if location.exists() else None
            if store is None or not len(store):
                return None, None
            return store.whitening, VerdictJudge(Cohort.of_store(store), stored_rule(catalog, card))
        finally:
            location.close()
    finally:
        engine.dispose()
