"""`whysim train` and `whysim evaluate`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from whysim.indexer.calibration import stored_rule
from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.cli_support import (
    USER_ERRORS,
    data_dir_options,
    echo_json,
    model_request_options,
    runtime_option,
)
from whysim.indexer.datadir import DataDir, resolve_data_dir
from whysim.indexer.evaluation.evaluate import evaluate
from whysim.indexer.model.card import ModelCard
from whysim.indexer.model.heads import HEADS
from whysim.indexer.model.loading import ModelRequest, build_branch, load_checkpoint
from whysim.indexer.pipeline.embedding import resolve_device
from whysim.indexer.pipeline.options import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, WHITENING_CHOICES, default_workers
from whysim.indexer.training.collection import scan_labelled
from whysim.indexer.training.objectives import LOSSES
from whysim.indexer.training.run import TrainOptions, TrainRun
from whysim.indexer.training.splits import SPLITS, Split
from whysim.indexer.training.trainer import LoopSettings
from whysim.indexer.training.views import VIEWS, parse_views
from whysim.indexer.verdicts import VerdictRule

COLLECTION = click.argument("collection", metavar="DATA_DIR",
                            type=click.Path(exists=True, file_okay=False, path_type=Path))


def runtime_options(func: Any) -> Any:
    for decorator in reversed([
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--workers", type=click.IntRange(min=0), default=default_workers(), show_default=True,
                     help="Decoding worker processes."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text."),
        click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal)."),
    ]):
        func = decorator(func)
    return func


def _progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


@click.command("train")
@COLLECTION
@data_dir_options
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Checkpoint folder (default: DATA-DIR/runs/<collection>-<time>, inside --data-dir).")
@model_request_options
@click.option("--loss", type=click.Choice(LOSSES), default="supcon", show_default=True,
              help="contrastive: the paper's pairs (one positive, one negative per image and epoch); "
                   "supcon: supervised contrastive loss over class-balanced batches.")
@click.option("--margin", type=float, default=1.0, show_default=True,
              help="Contrastive margin on the Euclidean distance of unit vectors (1.0: cosine <= 0.5).")
@click.option("--temperature", type=float, default=0.1, show_default=True, help="SupCon temperature.")
@click.option("--head", type=click.Choice(HEADS), default="mlp", show_default=True,
              help="Projection head: mlp (hidden layer as wide as the backbone, ReLU) or linear.")
@click.option("--head-dim", type=click.IntRange(min=2), default=256, show_default=True, help="Embedding size.")
@click.option("--trainable-stages", type=click.IntRange(min=0), default=0, show_default=True,
              help="Backbone modules trained, counted from the end (0: backbone frozen; head only).")
@click.option("--cache-features/--no-cache-features", default=None,
              help="Compute the frozen part once per image and view and cache it in DATA-DIR/cache "
                   "(default: on CPU yes, on CUDA no: train on augmented images).")
@click.option("--views", default=",".join(VIEWS), show_default=True,
              help=f"Cached views per image, from {', '.join(VIEWS)}; each epoch picks one per image.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many epochs without a higher validation ROC-AUC.")
@click.option("--batch-size", type=click.IntRange(min=4), default=64, show_default=True, help="Images per step.")
@click.option("--images-per-class", type=click.IntRange(min=2), default=8, show_default=True,
              help="K of the class-balanced batches (supcon).")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW learning rate of the head.")
@click.option("--backbone-lr-scale", type=float, default=0.1, show_default=True,
              help="Learning rate of the trainable backbone modules, relative to --lr.")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--warmup-epochs", type=float, default=1.0, show_default=True,
              help="Linear warm-up, then cosine decay to zero at the last epoch.")
@click.option("--validation-fraction", type=float, default=0.15, show_default=True)
@click.option("--test-fraction", type=float, default=0.15, show_default=True)
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Reuse the split of an earlier run (its split.json) instead of drawing one.")
@click.option("--seed", type=int, default=0, show_default=True, help="Split, pairs, batches and augmentation.")
@runtime_options
def train_command(collection: Path, data_dir: Path, catalog_url: str | None, output: Path | None,
                  backbone: str, weights: str, input_size: int, pooling: str, gem_p: float, views: str,
                  epochs: int, patience: int, lr: float, backbone_lr_scale: float, weight_decay: float,
                  warmup_epochs: float, seed: int, as_json: bool, progress: bool | None, **options: Any) -> None:
    """Train a Siamese branch on DATA_DIR, a class-per-folder image collection."""
    show = _progress(progress)
    try:
        request = ModelRequest(backbone, weights, input_size, pooling, gem_p)
        loop = LoopSettings(epochs=epochs, patience=patience, lr=lr, backbone_lr_scale=backbone_lr_scale,
                            weight_decay=weight_decay, warmup_epochs=warmup_epochs, seed=seed, progress=show)
        settings = TrainOptions(output=output, views=parse_views(views), loop=loop, **options)
        report = TrainRun(collection, resolve_data_dir(data_dir, catalog_url), request, settings).run()
    except (*USER_ERRORS, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        # Ctrl-C during training itself is handled by the trainer (it keeps the best epoch);
        # here it came during scanning or caching, whose finished part the cache keeps.
        click.echo("interrupted before training; cached features are kept, rerun to continue", err=True)
        sys.exit(130)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(report.summary())
    click.echo(f"next: whysim evaluate {collection} --model {report.output} "
               f"--split-file {report.output / 'split.json'}")


def fitted_rule_in_force(datadir: DataDir, card: ModelCard) -> VerdictRule | None:
    """The rule `whysim calibrate` fitted for this model in this data directory, if any (without
    one, the evaluated collection's own label-free rule applies)."""
    if not datadir.has_catalog():
        return None
    engine = open_catalog_engine(datadir.catalog_url)
    try:
        rule = stored_rule(Catalog(engine), card)
    finally:
        engine.dispose()
    return rule if rule.fitted else None


METRIC_ROWS = (("P@1", "p_at_1"), ("P@10", "p_at_10"), ("mAP@10", "map_at_10"), ("Recall@1", "recall_at_1"),
               ("Recall@5", "recall_at_5"), ("Recall@10", "recall_at_10"), ("pair ROC-AUC", "pair_roc_auc"),
               ("pair accuracy", "pair_accuracy"), ("pair F1", "pair_f1"))


@click.command("evaluate")
@COLLECTION
@data_dir_options
@click.option("--model", "model_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="A trained checkpoint; without it, the untrained model the options below describe.")
@model_request_options
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A run's split.json: evaluate on one of its splits only.")
@click.option("--split", "split_name", type=click.Choice(SPLITS), default=None,
              help="Which split of --split-file (default: test).")
@click.option("--batch-size", type=click.IntRange(min=0), default=0,
              help=f"Images per forward pass (0: {CPU_BATCH_SIZE} on CPU, {CUDA_BATCH_SIZE} on CUDA, as `whysim index`).")
@click.option("--whitening", type=click.Choice(WHITENING_CHOICES), default="auto", show_default=True,
              help="Fit the collection whitening on the evaluated images, as `whysim index` would (auto), or not.")
@runtime_option
@runtime_options
def evaluate_command(collection: Path, data_dir: Path, catalog_url: str | None, model_path: Path | None,
                     backbone: str, weights: str, input_size: int, pooling: str, gem_p: float,
                     split_file: Path | None, split_name: str | None, batch_size: int, whitening: str, runtime: str,
                     device: str, workers: int, as_json: bool, progress: bool | None) -> None:
    """Retrieval (leave-one-out P@k, mAP@10, Recall@k), pair verification and search's verdicts on
    DATA_DIR: on the top-10 hits of every query, and on random pairs. Verdicts follow the rule
    `whysim calibrate` stored in --data-dir for this model, if any, else the collection's label-free rule."""
    show = _progress(progress)
    if split_name is not None and split_file is None:
        raise click.UsageError("--split needs --split-file (a training run's split.json)")
    try:
        branch = (load_checkpoint(model_path) if model_path is not None
                  else build_branch(ModelRequest(backbone, weights, input_size, pooling, gem_p)))
        labelled = scan_labelled(collection, show)
        if split_file is not None:
            split_name = split_name or "test"
            paths = Split.load(split_file).of(split_name)
            labelled = labelled.subset(paths)
            if len(labelled) < len(paths):
                click.echo(f"note: {len(paths) - len(labelled)} files of the {split_name} split are not in "
                           f"{collection}", err=True)
        torch_device = resolve_device(device)
        batch_size = batch_size or (CUDA_BATCH_SIZE if torch_device.type == "cuda" else CPU_BATCH_SIZE)
        datadir = resolve_data_dir(data_dir, catalog_url)
        rule = fitted_rule_in_force(datadir, branch.card)
        result = evaluate(branch, labelled, torch_device, batch_size, workers, show, rule, whitening == "auto",
                          runtime, datadir.runtime_cache_dir)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    result["split"] = split_name or "all"
    if as_json:
        echo_json(result)
        return
    click.echo(f"model: {result['model']}")
    click.echo(f"images: {result['images']} in {result['classes']} classes ({result['split']}), "
               f"{int(result['pairs'])} verification pairs")
    for title, key in METRIC_ROWS:
        click.echo(f"  {title:<14} {result[key]:.4f}")
    click.echo(f"verdicts: {result['verdict_rule']['description']}")
    click.echo(f"  on the top-{result['topk_k']} hits of every query: F1 {result['topk_verdict_f1']:.4f} "
               f"(precision {result['topk_verdict_precision']:.4f}, recall {result['topk_verdict_recall']:.4f}); "
               f"{result['topk_verdict_f1_best']:.4f} at this collection's best cut; "
               f"{100 * result['topk_similar_fraction']:.1f}% of the hits called similar, "
               f"{100 * result['topk_true_match_fraction']:.1f}% true matches")
    click.echo(f"  on random pairs: balanced accuracy {result['verdict_balanced_accuracy']:.4f} "
               f"({result['verdict_balanced_accuracy_best']:.4f} at this collection's best cut)")

