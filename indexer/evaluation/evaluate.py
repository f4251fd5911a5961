"""`whysim evaluate`: embed a labelled collection (or one split of it) and measure the model.

Leave-one-out retrieval (P@k, mAP@10, Recall@k: see retrieval_metrics) and pair
verification (ROC-AUC, and accuracy / F1 at the model's own decision threshold: see
verification). Byte-identical copies count once, as in the index; copies filed under
different classes are left out (their class is ambiguous).
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

from indexer.evaluation.retrieval_metrics import retrieval_metrics
from indexer.evaluation.verification import verification_metrics
from indexer.model.branch import SiameseBranch
from indexer.pipeline.embedding import Embedder
from indexer.pipeline.reading import ImageFileDataset, ReadRequest, collate_reads, init_reader_worker
from indexer.training.collection import LabelledCollection

RETRIEVAL_KS = (1, 5, 10)


@dataclass
class EmbeddedFiles:
    vectors: np.ndarray  # (n, d) float32 for the files that could be read
    kept: list[int]  # positions (in the input order) of those files
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason


def embed_files(branch: SiameseBranch, paths: Sequence[Path], device: torch.device, batch_size: int,
                workers: int, progress: bool) -> EmbeddedFiles:
    """The same read and embed stages as the indexer, so vectors equal the indexed ones."""
    dataset = ImageFileDataset([ReadRequest(position, path) for position, path in enumerate(paths)],
                               branch.input_size)
    workers = min(workers, max(0, len(paths) // batch_size))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_reads,
                        worker_init_fn=init_reader_worker if workers else None)
    embedder = Embedder(branch, device)
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
    return EmbeddedFiles(vectors, kept, failures)


def labelled_metrics(vectors: np.ndarray, labels: Sequence[str], threshold: float) -> dict[str, float]:
    metrics: dict[str, float] = dict(retrieval_metrics(vectors, labels, ks=RETRIEVAL_KS))
    metrics.update(verification_metrics(vectors, labels, threshold=threshold))
    return metrics


def evaluate(branch: SiameseBranch, collection: LabelledCollection, device: torch.device, batch_size: int,
             workers: int, progress: bool) -> dict[str, Any]:
    started = time.perf_counter()
    distinct, removed = collection.distinct()
    if len(set(distinct.labels)) < 2:
        raise ValueError(f"evaluation needs labelled images in at least two class folders under {collection.root}")
    embedded = embed_files(branch, [distinct.root / image.path for image in distinct.images], device,
                           batch_size, workers, progress)
    labels = [distinct.images[position].label for position in embedded.kept]
    metrics = labelled_metrics(embedded.vectors, labels, branch.card.threshold)
    return {**metrics, "images": len(labels), "classes": len(set(labels)), "copies_left_out": removed,
            "failed": len(embedded.failures), "model": branch.card.short_name(),
            "seconds": round(time.perf_counter() - started, 2)}
