"""`whysim search IMAGE`: the most similar indexed images, as a table or as JSON."""
from __future__ import annotations

from pathlib import Path

import click

from whysim.indexer.cli_support import data_dir_options, echo_json
from whysim.indexer.datadir import resolve_data_dir
from whysim.indexer.imaging import ImageRejected
from whysim.indexer.model.loading import ModelLoadError
from whysim.indexer.verdicts import match_percent
from whysim.search.serving.engine import IndexNotReady, NotSearchable, SearchEngine, SearchPage, UnknownImage

SEARCH_ERRORS = (IndexNotReady, UnknownImage, NotSearchable, ImageRejected, ModelLoadError, OSError)


def print_table(page: SearchPage) -> None:
    if not page.hits:
        click.echo("no hits")
        return
    label_width = max(5, *(len(hit.image.label or "") for hit in page.hits))
    click.echo(f"{'rank':>4}  {'match':>5}  {'verdict':<10}  {'cosine':>6}  {'id':>7}  {'label':<{label_width}}  path")
    for rank, hit in enumerate(page.hits, start=page.offset + 1):
        label = hit.image.label or "-"
        verdict = hit.verdict
        judged = (f"{match_percent(verdict.match):>4}%  {'similar' if verdict.similar else 'dissimilar':<10}"
                  if verdict else f"{'-':>5}  {'-':<10}")
        click.echo(f"{rank:>4}  {judged}  {hit.score:>6.3f}  {hit.id:>7}  {label:<{label_width}}  {hit.image.path}")
    if page.next_offset is not None:
        click.echo(f"more: --offset {page.next_offset}")


@click.command("search")
@click.argument("image", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "image_id", type=click.IntRange(min=1), default=None,
              help="Search with an indexed image (its stored vector) instead of a file.")
@data_dir_options
@click.option("-k", "k", type=click.IntRange(1, 10_000), default=10, show_default=True, help="Number of hits.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Hits to skip (paging).")
@click.option("--min-score", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Leave out hits whose cosine similarity is lower.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"hits": [{"id", "path", "label", "score", "verdict", "verdict_score", "match"}, ...]}.')
def search_command(image: Path | None, image_id: int | None, data_dir: Path, catalog_url: str | None, k: int,
                   offset: int, min_score: float | None, as_json: bool) -> None:
    """Find the indexed images most similar to IMAGE (a file), or to an indexed image (--id)."""
    if (image is None) == (image_id is None):
        raise click.UsageError("give either an IMAGE file or --id, not both")
    datadir = resolve_data_dir(data_dir, catalog_url)
    if not datadir.has_catalog():
        raise click.ClickException(f"no index in {datadir.root}: run `whysim index DIR` first")
    engine = SearchEngine.open(datadir)
    try:
        if image is not None:
            page = engine.search_by_image(image.read_bytes(), k, offset, min_score)
        else:
            page = engine.search_by_id(image_id or 0, k, offset, min_score)
        rule = engine.verdict_rule()
    except SEARCH_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.close()
    if as_json:
        echo_json({"hits": [hit.to_dict() for hit in page.hits], "next_offset": page.next_offset,
                   "verdict_rule": rule.to_dict()})
    else:
        print_table(page)
        click.echo(f"match: how strongly each hit matches the query, the same scale on every collection "
                   f"(50% and up: similar); verdicts: {rule.describe()}")

