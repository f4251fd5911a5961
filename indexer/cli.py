"""`whysim index`, `stats`, `compact` and `calibrate`: the commands that write or read the index.

The options are built from light modules only; each command imports the pipeline, the catalog and
the vector store when it runs, so `whysim index --help` loads neither torch nor FAISS."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from whysim.indexer.cli_support import (
    USER_ERRORS,
    active_model_card,
    data_dir_options,
    echo_json,
    echo_report,
    explicit_model_options,
    model_request_options,
    runtime_option,
)
from whysim.indexer.datadir import VECTOR_STORE_ENV, DataDir, resolve_data_dir
from whysim.indexer.imaging import DEFAULT_MAX_PIXELS
from whysim.indexer.index_kinds import EXACT_SEARCH_MAX_VECTORS, INDEX_KINDS
from whysim.indexer.pipeline.options import (
    CPU_BATCH_SIZE,
    CUDA_BATCH_SIZE,
    DECODERS,
    ENGINES,
    WHITENING_CHOICES,
    default_workers,
)


def _requested_model(ctx: click.Context, datadir: DataDir, model_path: Path | None,
                     values: dict[str, Any]) -> Any:
    """The model the user asked for; None means "whatever the index already uses"."""
    from whysim.indexer.model.loading import ModelRequest, build_branch, load_checkpoint

    if model_path is not None:
        return load_checkpoint(model_path)
    explicit = explicit_model_options(ctx, values)
    active = active_model_card(datadir)
    if active is not None and not explicit:
        return None
    base = ModelRequest()
    if active is not None and active.weights in ("imagenet", "none"):
        base = ModelRequest(active.backbone, active.weights, active.input_size, active.pooling, active.gem_p)
    return build_branch(ModelRequest(**{**base.__dict__, **explicit}))


@click.command("index")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@data_dir_options
@click.option("--model", "model_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="A trained checkpoint (directory with card.json and weights.pt) to embed with.")
@model_request_options
@click.option("--rebuild", is_flag=True, help="Re-embed everything (needed to change the model).")
@click.option("--prune", is_flag=True, help="Remove catalog entries and vectors of files that disappeared.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@runtime_option
@click.option("--batch-size", type=click.IntRange(min=0), default=0,
              help=f"Images per forward pass (0: {CPU_BATCH_SIZE} on CPU, {CUDA_BATCH_SIZE} on CUDA).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help=f"Decoding worker processes (default: none on CPU, where a thread of this process decodes "
                   f"while the model runs; {default_workers()} with CUDA).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Images per catalog/vector commit.")
@click.option("--index-type", type=click.Choice(["auto", *INDEX_KINDS]), default="auto", show_default=True,
              help=f"Index kind; auto: exact (flat) up to {EXACT_SEARCH_MAX_VECTORS:,} vectors, hnsw above.")
@click.option("--vector-store", envvar=VECTOR_STORE_ENV, default=None, metavar="STORE",
              help="Where the vectors live: faiss (a file in the data directory), milvus:PATH.db (Milvus Lite) "
                   "or milvus://HOST:PORT/COLLECTION (a Milvus server). Remembered in the catalog; default: as before, "
                   f"else faiss (${VECTOR_STORE_ENV}).")
@click.option("--engine", type=click.Choice(ENGINES), default="builtin", show_default=True,
              help="builtin: read and embed on this machine; ray: read, decode and embed on a Ray cluster "
                   "(Ray Data; one GPU per model actor where the cluster has GPUs).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Ray cluster to use with --engine ray (default: start a local one on this machine).")
@click.option("--decoder", type=click.Choice(DECODERS), default="auto", show_default=True,
              help="pil: decode in worker processes; device: read with threads, decode JPEGs in batches "
                   "on the embedding device (nvJPEG on CUDA). auto: device on CUDA, pil on CPU.")
@click.option("--read-threads", type=click.IntRange(min=0), default=0,
              help="File-reading threads of the device decoder (0: a few per core).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse images with more pixels than this (decompression bombs).")
@click.option("--whitening", type=click.Choice(WHITENING_CHOICES), default=None,
              help="Collection-fitted PCA whitening of the vectors (auto: once the collection has enough images; "
                   "kept for later runs). Default: the data directory's choice, else auto.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the summary line.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.pass_context
def index_command(ctx: click.Context, directory: Path, data_dir: Path, catalog_url: str | None,
                  model_path: Path | None, rebuild: bool, prune: bool, device: str, runtime: str, batch_size: int,
                  workers: int | None, chunk_size: int, index_type: str, vector_store: str | None, engine: str,
                  ray_address: str | None, decoder: str, read_threads: int, max_pixels: int,
                  whitening: str | None, as_json: bool, progress: bool | None,
                  **model_values: Any) -> None:
    """Embed the images under DIRECTORY into the index (incremental; rerun to resume)."""
    from whysim.indexer.pipeline.runner import IndexingInterrupted, IndexOptions, IndexRun

    datadir = resolve_data_dir(data_dir, catalog_url)
    options = IndexOptions(device=device, runtime=runtime, batch_size=batch_size, workers=workers, chunk_size=chunk_size,
                           prune=prune, rebuild=rebuild, index_type=index_type, decoder=decoder,
                           read_threads=read_threads, max_pixels=max_pixels, vector_store=vector_store,
                           engine=engine, ray_address=ray_address, whitening=whitening,
                           progress=sys.stderr.isatty() if progress is None else progress)
    try:
        requested = _requested_model(ctx, datadir, model_path, model_values)
        report = IndexRun(directory, datadir, options, requested).run()
    except IndexingInterrupted as stop:
        click.echo(f"interrupted: {stop.report.summary()}; rerun the same command to continue", err=True)
        ctx.exit(130)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    echo_report(report, as_json)


@click.command("stats")
@data_dir_options
@click.option("--failed", is_flag=True, help="List every file that cannot be read, with the reason, instead.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats_command(data_dir: Path, catalog_url: str | None, failed: bool, as_json: bool) -> None:
    """Counts, model and index type of a data directory."""
    datadir = resolve_data_dir(data_dir, catalog_url)
    try:
        if failed:
            echo_failures(list_failures(datadir), as_json)
            return
        stats = collect_stats(datadir)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json(stats)
        return
    click.echo(f"data directory: {datadir.root}")
    counts = ", ".join(f"{status} {count}" for status, count in stats["status"].items())
    click.echo(f"images: {stats['images']}" + (f" ({counts})" if counts else ""))
    index = f"in a {stats['index_type']} index" if stats["index_type"] else "(no index yet: run `whysim index DIR`)"
    click.echo(f"vectors: {stats['vectors']} {index}" + (f" ({stats['vector_store']})" if stats["vectors"] else "")
               + (f", whitened ({stats['whitening']})" if stats["whitening"] else ""))
    click.echo(f"model: {stats['model'] or 'none yet'}")
    if stats["collection_kind"]:
        click.echo(f"collection: {stats['collection_kind']} (how verdicts judge a match: see whysim search)")
    click.echo(f"collections: {', '.join(stats['collections']) or 'none'}")
    click.echo(f"disk: {stats['disk_bytes'] / 1e6:.1f} MB")
    if stats["status"].get("failed"):
        click.echo("unreadable files: `whysim stats --failed` lists them")


def list_failures(datadir: DataDir) -> list[dict[str, str]]:
    """Every file the index could not read, as long as it stays broken (a fixed file is read again)."""
    if not datadir.has_catalog():
        return []
    from whysim.indexer.catalog.database import open_catalog_engine
    from whysim.indexer.catalog.repository import Catalog

    engine = open_catalog_engine(datadir.catalog_url)
    try:
        return [{"path": str(info.absolute_path), "error": info.error or "unreadable"}
                for info in Catalog(engine).failures()]
    finally:
        engine.dispose()


def echo_failures(failures: list[dict[str, str]], as_json: bool) -> None:
    if as_json:
        echo_json({"failures": failures})
        return
    for failure in failures:
        click.echo(f"{failure['path']}: {failure['error']}")
    click.echo(f"{len(failures)} unreadable file{'' if len(failures) == 1 else 's'}")


def collect_stats(datadir: DataDir) -> dict[str, Any]:
    from whysim.indexer.catalog.database import open_catalog_engine
    from whysim.indexer.catalog.repository import Catalog
    from whysim.indexer.collection_kind import recorded_kind
    from whysim.indexer.vector_stores.choice import open_location

    stats: dict[str, Any] = {"data_dir": str(datadir.root), "images": 0, "vectors": 0, "model": None,
                             "model_card": None, "index_type": None, "whitening": None, "status": {},
                             "collections": [], "disk_bytes": datadir.disk_bytes(), "vector_store": None,
                             "collection_kind": None}
    if not datadir.has_catalog():
        return stats
    engine = open_catalog_engine(datadir.catalog_url)
    try:
        catalog = Catalog(engine)
        counts = catalog.status_counts()
        card = catalog.active_model()
        stats.update(images=sum(counts.values()), status=counts,
                     collections=sorted(catalog.collection_roots().values()),
                     model=card.short_name() if card else None, model_card=card.to_dict() if card else None)
        kind = recorded_kind(catalog)
        stats["collection_kind"] = kind.name if kind is not None else None
        location = open_location(datadir, catalog)
        stats["vector_store"] = location.description
        try:
            if location.exists():
                store = location.load()
                stats.update(vectors=len(store), index_type=store.kind,
                             whitening=store.whitening.digest() if store.whitening is not None else None)
        finally:
            location.close()
    finally:
        engine.dispose()
    return stats


@click.command("compact")
@data_dir_options
@click.option("--index-type", type=click.Choice(["auto", *INDEX_KINDS]), default=None,
              help="Rebuild as this kind and keep it for later runs (auto: choose by size again). "
                   "Default: the current choice.")
@click.option("--whitening", type=click.Choice(WHITENING_CHOICES), default=None,
              help="Turn the collection-fitted whitening on (auto) or off, for this and later runs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compact_command(data_dir: Path, catalog_url: str | None, index_type: str | None, whitening: str | None,
                    as_json: bool) -> None:
    """Rebuild the vector index from the stored vectors (after many removals, or to change its type),
    refitting the collection's whitening on today's vectors."""
    from whysim.indexer.pipeline.compaction import compact_index

    datadir = resolve_data_dir(data_dir, catalog_url)
    try:
        report = compact_index(datadir, index_type, whitening)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    echo_report(report, as_json)


@click.command("calibrate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@data_dir_options
@click.option("--reset", is_flag=True, help="Forget the fitted cut: back to the label-free default.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def calibrate_command(directory: Path, data_dir: Path, catalog_url: str | None, reset: bool, as_json: bool) -> None:
    """Fit the similar/dissimilar cut on the labelled (class-per-folder) images of DIRECTORY, which
    must be indexed in this data directory, and use it for every verdict from now on."""
    from whysim.indexer.calibration import calibrate

    datadir = resolve_data_dir(data_dir, catalog_url)
    try:
        report = calibrate(datadir, directory, reset)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    if report is None:
        message = "verdicts use the label-free default cut again"
        echo_json({"reset": True, "message": message}) if as_json else click.echo(message)
        return
    echo_report(report, as_json)
