"""Converted copies of a branch, cached on disk so that only the first run pays the conversion.

A copy is keyed by the model card's key (which includes the weights' digest and the input size),
the runtime and its version, and this module's CONVERSION_VERSION: a new model, a runtime upgrade
or a change to how whysim converts each get a fresh copy. Copies are written into a temporary
folder and renamed into place, so a crash or a second process converting at the same time never
leaves a half-written model behind.
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from whysim.indexer.model.card import ModelCard

CONVERSION_VERSION = 2  # 2: OpenVINO models take uint8 pixels
# Folders converted by this process, by name: a second data directory copies one instead of
# converting again (a test session builds the same small model in many data directories).
_converted_here: dict[str, Path] = {}


def converted_model(cache_dir: Path, card: ModelCard, runtime: str, version: str, filename: str,
                    convert: Callable[[Path], None]) -> tuple[Path, float]:
    """The path of `filename` in the cached copy, converting (`convert(path)`) if there is none;
    with the seconds the conversion took (0.0 when the copy was cached)."""
    name = f"{card.key()}-{runtime}-{re.sub(r'[^A-Za-z0-9.]+', '_', version)}-v{CONVERSION_VERSION}"
    folder = cache_dir / name
    if (folder / filename).is_file():
        return folder / filename, 0.0
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_dir))
    started = time.perf_counter()
    try:
        earlier = _converted_here.get(name)
        if earlier is not None and (earlier / filename).is_file():
            shutil.copytree(earlier, scratch, dirs_exist_ok=True)
        else:
            convert(scratch / filename)
            print(f"converted the model for {runtime} {version} in {time.perf_counter() - started:.1f} s "
                  f"(first run only; cached in {folder})", file=sys.stderr, flush=True)
        try:
            scratch.rename(folder)
        except OSError:  # another process finished first: its copy is as good as ours
            pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _converted_here[name] = folder
    return folder / filename, time.perf_counter() - started
