"""`whysim explain A B` (similarity, verdict, panel PNG) and `whysim evaluate-explanations DIR`."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from whysim.indexer.cli_support import (
    USER_ERRORS,
    data_dir_options,
    echo_json,
    explicit_model_options,
    model_request_options,
)
from whysim.indexer.datadir import resolve_data_dir
from whysim.indexer.imaging import ImageRejected
from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.pipeline.embedding import Embedder, resolve_device
from whysim.indexer.runtime.choice import DEFAULT_RUNTIME
from whysim.indexer.verdicts import VerdictJudge, match_percent
from whysim.search.evaluation.correspondence_faithfulness import (
    BOX_FILLS,
    DEFAULT_BOX_FILL,
    DEFAULT_RANDOM_BOXES,
    BoxCheck,
)
from whysim.search.evaluation.faithfulness import DEFAULT_BATCH_SIZE, STEPS
from whysim.search.evaluation.faithfulness_evaluation import (
    DEFAULT_VARIANTS,
    collection_embed,
    evaluate_pairs,
    format_table,
    parse_variant,
    summarise,
)
from whysim.search.evaluation.image_files import read_image_file
from whysim.search.evaluation.model_choice import choose_branch, collection_context
from whysim.search.evaluation.pair_sampling import draw_pairs, labelled_files
from whysim.search.explain.correspondence import (
    DEFAULT_MATCHES,
    MAX_MATCHES,
    box_matches,
    correspondence_summary,
    shares_of_the_listed,
)
from whysim.search.explain.gradcam import DEFAULT_METHOD, METHODS, PairExplainer, PairExplanation, cosine_rule
from whysim.search.explain.overlays import explanation_panel

F = TypeVar("F", bound=Callable[..., Any])

EXPLAIN_ERRORS = (*USER_ERRORS, ImageRejected)


def model_options(func: F) -> F:
    """--model, the model request options (--backbone ...), --threshold and --device."""
    func = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)(func)
    func = click.option("--threshold", type=float, default=None,
                        help="A cosine cut that overrides the verdict rule (default: the data directory index's rule, "
                             "else the model card's cosine cut).")(func)
    func = model_request_options(func)
    return click.option("--model", "model_path", type=click.Path(exists=True, path_type=Path), default=None,
                        help="A trained checkpoint (directory with card.json and weights.pt).")(func)


def _branch(ctx: click.Context, data_dir: Path, catalog_url: str | None, model_path: Path | None,
            values: dict[str, Any]) -> SiameseBranch:
    """Without --model or model options, the data directory's index model (else the default model)."""
    return choose_branch(resolve_data_dir(data_dir, catalog_url), model_path, explicit_model_options(ctx, values))


def _served_context(data_dir: Path, catalog_url: str | None, branch: SiameseBranch,
                    threshold: float | None) -> tuple[Whitening | None, VerdictJudge | None]:
    """The data directory index's whitening and verdict judge, so a pair is scored and judged as
    search would; none when an explicit --threshold (a cosine cut) overrides the collection's rule."""
    if threshold is not None:
        return None, None
    return collection_context(resolve_data_dir(data_dir, catalog_url), branch)


def _explainer(branch: SiameseBranch, device: str, threshold: float | None, method: str = DEFAULT_METHOD,
               whitening: Whitening | None = None, runtime: str = "torch",
               cache_dir: Path | None = None) -> tuple[PairExplainer, Embedder]:
    """The explainer, and an embedder on `runtime` (`explain` embeds nothing but the pair, which the
    explainer does in PyTorch: converting the model for another runtime would be wasted)."""
    embedder = Embedder(branch, resolve_device(device), runtime, cache_dir)
    return PairExplainer(embedder.branch, threshold, whitening=whitening, method=method), embedder


def explanation_summary(explanation: PairExplanation) -> dict[str, Any]:
    return {
        "similarity": explanation.similarity,
        "verdict": explanation.verdict,
        "threshold": explanation.threshold,
        "verdict_score": explanation.verdict_score,
        "match": explanation.match,
        "verdict_rule": explanation.rule,
        "factual": f"evidence for the verdict '{explanation.verdict}'",
        "counterfactual": f"evidence against the verdict '{explanation.verdict}'",
        "method": explanation.method,
    }


def _default_panel_path(first: Path, second: Path) -> Path:
    return Path(f"explain-{first.stem}-vs-{second.stem}.png")


@click.command("explain", short_help="Similarity, verdict and Grad-CAM panel for two image files.")
@click.argument("first", metavar="A", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("second", metavar="B", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Panel PNG to write (default: explain-A-vs-B.png in the current directory).")
@click.option("--maps", "maps_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also save the raw maps (target-layer resolution, [0, 1]) to this .npz file.")
@click.option("--matches", "match_count", type=click.IntRange(1, MAX_MATCHES), default=DEFAULT_MATCHES,
              show_default=True, help="Top pairs of matched regions to draw and report.")
@click.option("--method", type=click.Choice(METHODS), default=DEFAULT_METHOD, show_default=True,
              help="How the maps are made: Grad-CAM, or each region's exact contribution to the similarity.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@model_options
@data_dir_options
@click.pass_context
def explain_command(ctx: click.Context, first: Path, second: Path, output: Path | None, maps_path: Path | None,
                    match_count: int, method: str, as_json: bool, model_path: Path | None, threshold: float | None,
                    device: str, data_dir: Path, catalog_url: str | None, **model_values: Any) -> None:
    """Similarity of images A and B, the model's verdict, and a panel PNG: the top matched regions
    (numbered boxes joined by lines) and each image's factual (for the verdict) and
    counterfactual (against it) overlays."""
    output = output or _default_panel_path(first, second)
    try:
        branch = _branch(ctx, data_dir, catalog_url, model_path, model_values)
        whitening, judge = _served_context(data_dir, catalog_url, branch, threshold)
        explainer, _ = _explainer(branch, device, threshold, method)
        query, hit = (read_image_file(path, branch.input_size) for path in (first, second))
        explanation = explainer.explain(query.pixels, hit.pixels[None], whitening, judge)[0]
        explanation_panel(query.image, hit.image, explanation, matches=match_count).save(output, "PNG")
        if maps_path is not None:
            np.savez_compressed(maps_path, query_factual=explanation.query.factual,
                                query_counterfactual=explanation.query.counterfactual,
                                hit_factual=explanation.hit.factual,
                                hit_counterfactual=explanation.hit.counterfactual)
    except EXPLAIN_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # the panel or maps file could not be written
        raise click.ClickException(f"cannot write output: {exc}") from exc
    sizes = ((query.width, query.height), (hit.width, hit.height))
    matches = box_matches(explanation.correspondence, match_count, *sizes)
    summary = {**explanation_summary(explanation), "a": str(first), "b": str(second), "panel": str(output),
               "maps": str(maps_path) if maps_path else None, "model": branch.card.short_name(),
               "matches": [match.to_dict() for match in matches],
               "correspondence": correspondence_summary(explanation.correspondence, *sizes)}
    if as_json:
        echo_json(summary)
        return
    click.echo(f"match {match_percent(explanation.match)}%: {explanation.verdict} "
               f"(50% and up is similar; cosine similarity {explanation.similarity:.4f}; model {summary['model']})")
    click.echo(f"verdict rule: {explanation.rule['description'] if explanation.rule else '-'}")
    click.echo(f"factual maps: {summary['factual']}; counterfactual maps: {summary['counterfactual']}")
    for match, part in zip(matches, shares_of_the_listed(matches), strict=True):
        direction = "for" if match.supports else "against"
        click.echo(f"region pair {match.rank}: A {match.query_box} ~ B {match.hit_box}, "
                   f"{part:.0%} of the listed regions' evidence {direction} the match "
                   f"({match.evidence_share:.1%} of all of it)")
    click.echo(f"panel: {output}")


@click.command("evaluate-explanations", short_help="Deletion/insertion faithfulness of the maps on labelled pairs.")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pairs", "pair_count", type=click.IntRange(min=1), default=100, show_default=True,
              help="Pairs to draw: half same-class, half different-class (class = parent folder).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds pair drawing, random maps and tie-breaks.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Perturbed images per forward pass.")
@click.option("--maps", "variants", default=",".join(DEFAULT_VARIANTS), show_default=True,
              help="Comma-separated map variants to evaluate: gradcam, contribution, gradcam@previous "
                   "(Grad-CAM at the backbone's previous, twice finer stage).")
@click.option("--steps", type=click.IntRange(min=2), default=STEPS, show_default=True,
              help="Curve steps (50: 2% of the pixels per step).")
@click.option("--random-boxes", type=click.IntRange(min=1), default=DEFAULT_RANDOM_BOXES, show_default=True,
              help="Random boxes per pair that the top matched box is compared with.")
@click.option("--box-fill", type=click.Choice(BOX_FILLS), default=DEFAULT_BOX_FILL, show_default=True,
              help="What a deleted box shows in the correspondence check: the network's input mean colour, "
                   "or a blurred copy of the image (as the curves use).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@model_options
@data_dir_options
@click.pass_context
def evaluate_explanations_command(ctx: click.Context, directory: Path, pair_count: int, seed: int, batch_size: int,
                                  variants: str, steps: int, random_boxes: int, box_fill: str,
                                  as_json: bool,
                                  progress: bool | None, model_path: Path | None,
                                  threshold: float | None, device: str, data_dir: Path, catalog_url: str | None,
                                  **model_values: Any) -> None:
    """Faithfulness of the hit's factual, counterfactual and random maps on pairs drawn from DIRECTORY
    (one folder per class): RISE-style deletion and insertion AUCs, in 2% steps with a blurred fill;
    and of the correspondence: deleting the top matched hit box against random boxes of its size."""
    try:
        names = [name.strip() for name in variants.split(",") if name.strip()]
        for name in names:
            parse_variant(name)
        pairs = draw_pairs(labelled_files(directory), pair_count, seed)
        branch = _branch(ctx, data_dir, catalog_url, model_path, model_values)
        whitening, judge = _served_context(data_dir, catalog_url, branch, threshold)
        explainer, embedder = _explainer(branch, device, threshold, whitening=whitening, runtime=DEFAULT_RUNTIME,
                                         cache_dir=resolve_data_dir(data_dir, catalog_url).runtime_cache_dir)
        evaluation = evaluate_pairs(explainer, collection_embed(embedder, whitening), pairs, seed, steps, batch_size,
                                    progress=sys.stderr.isatty() if progress is None else progress,
                                    variants=names, box_check=BoxCheck(random_boxes, box_fill), judge=judge)
    except EXPLAIN_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    if not evaluation.results:
        raise click.ClickException(f"no pair could be read: {'; '.join(evaluation.skipped[:3])}")
    summary = summarise(evaluation.results)
    rule = judge.rule.to_dict() if judge is not None else cosine_rule(explainer.threshold)
    if as_json:
        echo_json({"directory": str(directory), "pairs": pair_count, "evaluated": len(evaluation.results),
                   "skipped": evaluation.skipped, "seed": seed, "steps": steps, "maps": names,
                   "random_boxes": random_boxes, "box_fill": box_fill, "perturbed": "hit",
                   "model": branch.card.short_name(), "threshold": explainer.threshold, "verdict_rule": rule,
                   "whitening": whitening.digest() if whitening is not None else None, "groups": summary,
                   "pair_results": [result.to_dict() for result in evaluation.results]})
        return
    transform = (f"the data directory's whitening {whitening.digest()}" if whitening is not None
                 else "no collection transform (no index of this model in the data directory)")
    click.echo(f"{len(evaluation.results)} pairs from {directory} (seed {seed}), model {branch.card.short_name()}, "
               f"{transform}; verdicts: {rule['description']}; the hit is perturbed, scored against the "
               f"unmodified query")
    click.echo(format_table(summary))
    for reason in evaluation.skipped:
        click.echo(f"skipped: {reason}", err=True)
