"""`whysim evaluate`: embed a labelled collection (or one split of it) and measure the model.

Leave-one-out retrieval (P@k, mAP@10, Recall@k: see retrieval_metrics), the separation of random
verification pairs (ROC-AUC: see verification), and search's verdicts (see verdict_metrics). Byte-identical copies count once, as in the index; copies filed under
different classes are left out (their class is ambiguous).

The vectors are the ones search would use: the collection's whitening is fitted on the evaluated
collection exactly as `whysim index` fits it, and the verdict is judged as search judges it
(whysim.indexer.verdicts: the collection-normalised score against the rule in force), so
`verdict_balanced_accuracy` is what a user of the index would see, and
`verdict_balanced_accuracy_best` what the best cut for this collection would give.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from whysim.indexer.collection_kind import instance_level
from whysim.indexer.evaluation.pair_metrics import accuracy_at, f1_at
from whysim.indexer.evaluation.retrieval_metrics import retrieval_metrics
from whysim.indexer.evaluation.topk_verdicts import TOPK_VERDICT_K, best_f1, leave_one_out_hits, precision_recall_f1
from whysim.indexer.evaluation.verification import pair_scores, verification_metrics, verification_pairs
from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.pipeline.embedding import Embedder
from whysim.indexer.pipeline.reading import ImageFileDataset, ReadRequest, collate_reads, init_reader_worker
from whysim.indexer.pipeline.whitening_policy import collection_whitening
from whysim.indexer.runtime.choice import DEFAULT_RUNTIME
from whysim.indexer.training.collection import LabelledCollection
from whysim.indexer.verdicts import Cohort, VerdictJudge, VerdictRule, balanced_accuracy, best_cut, default_rule

RETRIEVAL_KS = (1, 5, 10)


@dataclass
class EmbeddedFiles:
    vectors: np.ndarray  # (n, d) float32 for the files that could be read
    kept: list[int]  # positions (in the input order) of those files
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason
    runtime: str = ""  # what embedded them (whysim.indexer.runtime)


def embed_files(branch: SiameseBranch, paths: Sequence[Path], device: torch.device, batch_size: int,
                workers: int, progress: bool, runtime: str = DEFAULT_RUNTIME,
                cache_dir: Path | None = None) -> EmbeddedFiles:
    """The same read and embed stages as the indexer, so vectors equal the indexed ones."""
    dataset = ImageFileDataset([ReadRequest(position, path) for position, path in enumerate(paths)],
                               branch.input_size)
    workers = min(workers, max(0, len(paths) // batch_size))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_reads,
                        worker_init_fn=init_reader_worker if workers else None)
    embedder = Embedder(branch, device, runtime, cache_dir)
    chunks, kept, failures = [], [], {}
    with tqdm(total=len(paths), desc="embedding", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for batch in loader:
            for result in batch.results:
                if result.error is None:
                    kept.append(result.image_id)
                else:
                    failures[str(paths[result.image_id])] = result.error
                    tqdm.write(f"skipping {paths[result.image_id]}: {result.error}")
            if batch.pixels is not None:
                chunks.append(embedder(batch.pixels))
            bar.update(len(batch.results))
    dim = branch.card.dim
    vectors = np.concatenate(chunks) if chunks else np.empty((0, dim), dtype=np.float32)
    return EmbeddedFiles(vectors, kept, failures, embedder.runtime)


def labelled_metrics(vectors: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Retrieval, and the threshold-free separation of the random verification pairs (ROC-AUC)."""
    metrics: dict[str, float] = dict(retrieval_metrics(vectors, labels, ks=RETRIEVAL_KS))
    pairs = verification_metrics(vectors, labels)
    metrics.update(pair_roc_auc=pairs["pair_roc_auc"], pairs=pairs["pairs"])
    return metrics


def verdict_metrics(vectors: np.ndarray, labels: Sequence[str], rule: VerdictRule,
                    k: int = TOPK_VERDICT_K) -> dict[str, float]:
    """Search's verdicts under `rule`, judged against the collection as search judges them:
    - on the top-k hits of every leave-one-out query, where users meet them: precision, recall and
      F1 of "similar", the fraction of shown hits called similar, and the best F1 of any single cut
      on the same hits (an oracle, for reference);
    - on the random verification pairs: accuracy, F1 and balanced accuracy at the rule's cut, and
      the best balanced accuracy of any cut."""
    judge = VerdictJudge(Cohort.sample(vectors), rule)
    hits = leave_one_out_hits(vectors, labels, k)
    hit_scores = judge.scores(vectors[hits.queries], vectors[hits.hits], hits.similarities)
    precision, recall, f1 = precision_recall_f1(hit_scores >= rule.cut, hits.same)
    best_hit_cut, best_hit_f1 = best_f1(hit_scores, hits.same)
    pairs = verification_pairs(labels)
    scores = judge.scores(vectors[pairs.left], vectors[pairs.right], pair_scores(vectors, pairs))
    cut, best = best_cut(scores, pairs.same)
    return {"topk_k": k, "topk_verdict_precision": precision, "topk_verdict_recall": recall, "topk_verdict_f1": f1,
            "topk_verdict_f1_best": best_hit_f1, "topk_verdict_best_cut": best_hit_cut,
            "topk_similar_fraction": float((hit_scores >= rule.cut).mean()), "topk_true_match_fraction":
            float(hits.same.mean()),
            "pair_accuracy": accuracy_at(scores, pairs.same, rule.cut), "pair_f1": f1_at(scores, pairs.same, rule.cut),
            "verdict_balanced_accuracy": balanced_accuracy(scores, pairs.same, rule.cut),
            "verdict_balanced_accuracy_best": best, "verdict_best_cut": cut, "verdict_cut": rule.cut}


def evaluate(branch: SiameseBranch, collection: LabelledCollection, device: torch.device, batch_size: int,
             workers: int, progress: bool, rule: VerdictRule | None = None,
             whitening: bool = True, runtime: str = DEFAULT_RUNTIME, cache_dir: Path | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    distinct, removed = collection.distinct()
    if len(set(distinct.labels)) < 2:
        raise ValueError(f"evaluation needs labelled images in at least two class folders under {collection.root}")
    embedded = embed_files(branch, [distinct.root / image.path for image in distinct.images], device,
                           batch_size, workers, progress, runtime, cache_dir)
    labels = [distinct.images[position].label for position in embedded.kept]
    transform = collection_whitening(embedded.vectors, whitening)
    vectors = transform.apply(embedded.vectors) if transform is not None else embedded.vectors
    instance = instance_level(embedded.vectors)
    rule = rule or default_rule(instance)
    metrics = labelled_metrics(vectors, labels)
    metrics.update(verdict_metrics(vectors, labels, rule))
    return {**metrics, "images": len(labels), "classes": len(set(labels)), "copies_left_out": removed,
            "failed": len(embedded.failures), "model": branch.card.short_name(), "runtime": embedded.runtime,
            "whitening": transform.digest() if transform is not None else None,
            "collection_kind": "instance-level" if instance else "class-level",
            "verdict_rule": rule.to_dict(), "seconds": round(time.perf_counter() - started, 2)}
