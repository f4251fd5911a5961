"""`whysim calibrate DIR`: fits the verdict cut on the indexed collection's own labelled pairs.

Labels are the class folders (as `whysim evaluate` reads them), vectors are the index's own (no
re-embedding), and scores are normalised against the index's cohort exactly as search does, so
the fitted cut is the best balanced-accuracy cut for the verdicts users will see. The rule is
stored in the catalog for the model it was fitted with; search, explanations, `whysim explain`
and `whysim evaluate` then use it, and say so.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.datadir import DataDir
from whysim.indexer.evaluation.verification import pair_scores, verification_pairs
from whysim.indexer.model.card import ModelCard
from whysim.indexer.vector_stores.choice import open_location
from whysim.indexer.verdicts import FITTED_RULE_KIND, RULE_SETTING, Cohort, VerdictJudge, VerdictRule, best_cut

# More pairs than `whysim evaluate` draws (5 per image), with another seed: the cut is fitted on
# a larger sample of the collection's pairs than the one it is then evaluated on.
CALIBRATION_PAIRS_PER_IMAGE = 20
CALIBRATION_SEED = 7


@dataclass(frozen=True)
class CalibrationReport:
    images: int
    classes: int
    pairs: int
    cut: float
    balanced_accuracy: float
    rule: VerdictRule

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["rule"] = self.rule.to_dict()
        return data

    def summary(self) -> str:
        return (f"fitted the verdict cut {self.cut:.3f} on {self.pairs:,} labelled pairs of {self.images} images "
                f"in {self.classes} classes (balanced accuracy {self.balanced_accuracy:.3f}); "
                f"search and explanations now use it")


def stored_rule(catalog: Catalog, card: ModelCard) -> VerdictRule:
    """The catalog's rule when it was fitted for this model; the default otherwise."""
    try:
        rule = VerdictRule.from_json(catalog.get_setting(RULE_SETTING))
    except (ValueError, TypeError):
        return VerdictRule()
    return rule if rule.fitted and rule.model == card.key() else VerdictRule()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or str(path).startswith(str(folder) + os.sep)


def calibrate(datadir: DataDir, directory: Path, reset: bool = False) -> CalibrationReport | None:
    """Fits and stores the cut for the labelled images of the index under `directory`
    (None with `reset`: back to the default rule)."""
    folder = directory.resolve()
    with datadir.writer_lock():
        catalog = Catalog(open_catalog_engine(datadir.catalog_url))
        try:
            if reset:
                catalog.set_setting(RULE_SETTING, None)
                return None
            card = catalog.active_model()
            location = open_location(datadir, catalog)
            try:
                if card is None or not location.exists():
                    raise FileNotFoundError(f"no index in {datadir.root}; run `whysim index {directory}` first")
                store = location.load()
            finally:
                location.close()
            rows = [info for info in catalog.list_images(ImageStatus.INDEXED, limit=10**9)
                    if info.label is not None and _inside(info.absolute_path.resolve(), folder)]
            vectors = [store.reconstruct(info.id) for info in rows]
            kept = [(info, vector) for info, vector in zip(rows, vectors) if vector is not None]
            if not kept:
                raise ValueError(f"no indexed, labelled image under {directory}; index it first "
                                 f"(labels are the folders images sit in)")
            labels = [info.label for info, _ in kept]
            matrix = np.stack([vector for _, vector in kept])
            pairs = verification_pairs(labels, CALIBRATION_SEED, CALIBRATION_PAIRS_PER_IMAGE)
            judge = VerdictJudge(Cohort.of_store(store), VerdictRule())
            scores = judge.scores(matrix[pairs.left], matrix[pairs.right], pair_scores(matrix, pairs))
            cut, accuracy = best_cut(scores, pairs.same)
            rule = VerdictRule(kind=FITTED_RULE_KIND, cut=round(cut, 4), pairs=len(pairs),
                               balanced_accuracy=round(accuracy, 4), source=str(directory), model=card.key())
            catalog.set_setting(RULE_SETTING, rule.to_json())
        finally:
            catalog.engine.dispose()
    return CalibrationReport(len(kept), len(set(labels)), len(pairs), rule.cut, accuracy, rule)
