"""`whysim calibrate DIR`: fits the verdict rule on the indexed collection's own labelled images.

Labels are the class folders (as `whysim evaluate` reads them), vectors are the index's own (no
re-embedding), and verdicts are judged where users meet them: every labelled image queries the
other labelled images (leave-one-out), and the rule's cut is the one with the best F1 of "similar"
on those top-k hits, under the normalisation of the collection's label-free rule (its kind). The
match figure's spread is the maximum-likelihood fit of P(true match) = logistic((z - cut) /
spread) on the same hits, so after calibration the match strength is a probability fitted on the
collection's own labels. The rule is stored in the catalog for the model it was fitted with;
search, explanations, `whysim explain` and `whysim evaluate` then use it, and say so.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.collection_kind import recorded_kind, settle_collection_kind
from whysim.indexer.datadir import DataDir
from whysim.indexer.evaluation.topk_verdicts import TOPK_VERDICT_K, best_f1, leave_one_out_hits
from whysim.indexer.model.card import ModelCard
from whysim.indexer.vector_stores.choice import open_location
from whysim.indexer.verdicts import FITTED_RULE_KIND, RULE_SETTING, Cohort, VerdictJudge, VerdictRule, default_rule

# Spreads tried for the match figure (log-spaced), from a step to a gentle slope.
SPREADS = np.geomspace(0.05, 20.0, 200)


@dataclass(frozen=True)
class CalibrationReport:
    images: int
    classes: int
    hits: int
    cut: float
    f1: float
    rule: VerdictRule

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["rule"] = self.rule.to_dict()
        return data

    def summary(self) -> str:
        return (f"fitted the verdict cut on the top-{TOPK_VERDICT_K} hits of {self.images} labelled images in "
                f"{self.classes} classes ({self.hits:,} hits): F1 of \"similar\" {self.f1:.3f}; "
                f"search and explanations now use it")


def collection_rule(catalog: Catalog) -> VerdictRule:
    """The label-free rule for the collection's recorded kind (class-level until one is recorded)."""
    kind = recorded_kind(catalog)
    return default_rule(kind is not None and kind.instance_level)


def stored_rule(catalog: Catalog, card: ModelCard) -> VerdictRule:
    """The catalog's fitted rule when it was fitted for this model; the collection's default otherwise."""
    try:
        rule = VerdictRule.from_json(catalog.get_setting(RULE_SETTING))
    except (ValueError, TypeError):
        rule = VerdictRule()
    return rule if rule.fitted and rule.model == card.key() else collection_rule(catalog)


def match_spread(scores: np.ndarray, same: np.ndarray, cut: float) -> float:
    """The spread whose logistic((score - cut) / spread) has the highest likelihood on these hits."""
    margin = (np.asarray(scores, dtype=np.float64) - cut)[None, :] / SPREADS[:, None]
    log_p = -np.logaddexp(0.0, -margin)  # log logistic
    log_not_p = -np.logaddexp(0.0, margin)
    likelihood = np.where(np.asarray(same, dtype=bool)[None, :], log_p, log_not_p).sum(axis=1)
    return float(SPREADS[int(np.argmax(likelihood))])


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
            base = default_rule(settle_collection_kind(catalog, store).instance_level)
            hits = leave_one_out_hits(matrix, labels, TOPK_VERDICT_K)
            if not hits.same.any():
                raise ValueError(f"no labelled image under {directory} has a match of its own label among its "
                                 f"top {TOPK_VERDICT_K} hits: there is nothing to fit a cut on")
            scores = VerdictJudge(Cohort.of_store(store), base).scores(matrix[hits.queries], matrix[hits.hits],
                                                                        hits.similarities)
            cut, f1 = best_f1(scores, hits.same)
            rule = replace(base, kind=FITTED_RULE_KIND, cut=round(cut, 4), spread=match_spread(scores, hits.same, cut),
                           hits=len(hits), f1=round(f1, 4), source=str(directory), model=card.key())
            catalog.set_setting(RULE_SETTING, rule.to_json())
        finally:
            catalog.engine.dispose()
    return CalibrationReport(len(kept), len(set(labels)), len(hits), rule.cut, f1, rule)
