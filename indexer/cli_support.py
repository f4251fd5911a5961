"""What every whysim command shares: the data directory options, the model request options,
JSON output, and the errors a command turns into a message (not a traceback).

Imports nothing heavy (no torch, FAISS, SQLAlchemy): a command's `--help` is built from it."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from whysim.indexer.datadir import CATALOG_URL_ENV, DATA_DIR_ENV, DEFAULT_DATA_DIR, DataDir, DataDirLocked
from whysim.indexer.errors import MilvusUnavailable, ModelLoadError, ModelMismatch, RayUnavailable
from whysim.indexer.model.backbones import BACKBONES
from whysim.indexer.model.card import (
    DEFAULT_BACKBONE,
    DEFAULT_GEM_P,
    DEFAULT_INPUT_SIZE,
    DEFAULT_POOLING,
    DEFAULT_PRESET,
    INPUT_SIZE_PRESETS,
    POOLINGS,
)
from whysim.indexer.runtime.choice import CPU_PREFERENCE, DEFAULT_RUNTIME, RUNTIMES
from whysim.indexer.runtime.session import RuntimeUnavailable

F = TypeVar("F", bound=Callable[..., Any])

USER_ERRORS = (ModelMismatch, ModelLoadError, DataDirLocked, MilvusUnavailable, RayUnavailable, RuntimeUnavailable,
               FileNotFoundError, ValueError)


def data_dir_options(func: F) -> F:
    """--data-dir and --catalog-url, on every command; the command receives `datadir: DataDir`."""
    func = click.option("--catalog-url", envvar=CATALOG_URL_ENV, default=None,
                        help=f"SQLAlchemy URL of the catalog (default: SQLite inside the data directory; ${CATALOG_URL_ENV}).")(func)
    func = click.option("--data-dir", envvar=DATA_DIR_ENV, default=DEFAULT_DATA_DIR, show_default=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help=f"Where whysim keeps its catalog, vectors, thumbnails and caches (${DATA_DIR_ENV}).")(func)
    return func


def runtime_option(func: F) -> F:
    """--runtime: what runs the embedding forward pass (explanations and training always use PyTorch)."""
    return click.option("--runtime", type=click.Choice(RUNTIMES), default=DEFAULT_RUNTIME, show_default=True,
                        help=f"Runtime of the embedding forward pass; auto: on CUDA torch, on CPU the first "
                             f"installed of {', '.join(CPU_PREFERENCE)} (fastest first). Same vectors on each.")(func)


def echo_json(payload: object) -> None:
    click.echo(json.dumps(payload, sort_keys=True, default=str))


def echo_report(report: Any, as_json: bool) -> None:
    """A command's report: one JSON object, or its summary line."""
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.summary())


MODEL_OPTION_NAMES = ("backbone", "weights", "input_size", "pooling", "gem_p")


def _apply_preset(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """An eager option: a preset becomes --input-size's default, so an explicit --input-size still wins
    and the preset counts as an explicit model choice (see explicit_model_options)."""
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), "input_size": INPUT_SIZE_PRESETS[value]}


def model_request_options(func: F) -> F:
    """--preset, --backbone, --weights, --input-size, --pooling, --gem-p: an untrained model, as a
    ModelRequest's fields."""
    presets = ", ".join(f"{name} = {size} px" for name, size in INPUT_SIZE_PRESETS.items())
    for decorator in reversed([
        click.option("--preset", type=click.Choice(list(INPUT_SIZE_PRESETS)), default=None, is_eager=True,
                     expose_value=False, callback=_apply_preset,
                     help=f"Input size by name ({presets}; default {DEFAULT_PRESET}): detailed tells look-alike "
                          f"photos apart, fast embeds about 4x faster for collections of broad categories."),
        click.option("--backbone", type=click.Choice(sorted(BACKBONES)), default=DEFAULT_BACKBONE, show_default=True),
        click.option("--weights", default="imagenet", show_default=True,
                     help="'imagenet' (local copy; never downloaded), 'none' (random init) or a .pth path."),
        click.option("--input-size", type=int, default=DEFAULT_INPUT_SIZE, show_default=True,
                     help="Square input side, multiple of 32 (overrides --preset)."),
        click.option("--pooling", type=click.Choice(POOLINGS), default=DEFAULT_POOLING, show_default=True),
        click.option("--gem-p", type=float, default=DEFAULT_GEM_P, show_default=True, help="GeM exponent."),
    ]):
        func = decorator(func)
    return func


def explicit_model_options(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The model options the user actually gave (not left at their defaults), with their values."""
    return {name: values[name] for name in MODEL_OPTION_NAMES
            if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}


def active_model_card(datadir: DataDir) -> Any:
    """The model the data directory's index was built with; None when there is no catalog yet."""
    if not datadir.has_catalog():
        return None
    from whysim.indexer.catalog.database import open_catalog_engine
    from whysim.indexer.catalog.repository import Catalog

    engine = open_catalog_engine(datadir.catalog_url)
    try:
        return Catalog(engine).active_model()
    finally:
        engine.dispose()
