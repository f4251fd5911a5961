"""Builds branches from a request, a model card or a checkpoint; saves checkpoints."""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from whysim.indexer.errors import ModelLoadError
from whysim.indexer.model.backbones import get_backbone
from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.model.card import (
    DEFAULT_BACKBONE,
    DEFAULT_GEM_P,
    DEFAULT_INPUT_SIZE,
    DEFAULT_POOLING,
    DEFAULT_THRESHOLD,
    ModelCard,
)
from whysim.indexer.model.heads import build_head
from whysim.indexer.model.pooling import build_pooling

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.pt"
# Random initialisation (`--weights none`) is seeded so the same request gives the same model.
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class ModelRequest:
    """What a user asks for on the command line (`--backbone`, `--weights`, ...)."""

    backbone: str = DEFAULT_BACKBONE
    weights: str = "imagenet"  # "imagenet", "none" or a path to a .pth file
    input_size: int = DEFAULT_INPUT_SIZE
    pooling: str = DEFAULT_POOLING
    gem_p: float = DEFAULT_GEM_P
    head_dim: int | None = None
    head: str = "linear"


def state_digest(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers: identifies the weights, whatever their source."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(str(data.dtype).encode())
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def _assemble(card: ModelCard, weights_file: Path | None, seed_random: bool) -> SiameseBranch:
    backbone = get_backbone(card.backbone)
    with torch.random.fork_rng(devices=[]):
        if seed_random:
            torch.manual_seed(RANDOM_INIT_SEED)
        try:
            features = backbone.build(weights_file)
            head = build_head(card.head, backbone.channels, card.head_dim) if card.head_dim else None
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(str(exc)) from exc
    pooling = build_pooling(card.pooling, card.gem_p)
    branch = SiameseBranch(card, features, pooling, head)
    return branch.eval()


def build_branch(request: ModelRequest) -> SiameseBranch:
    """A fresh branch (ImageNet, random or local weights), with its card filled in."""
    backbone = get_backbone(request.backbone)
    if request.input_size % 32 or not 64 <= request.input_size <= 1024:
        # Multiples of 32 keep every stride-2 stage on an even size, where the
        # TensorFlow-style static "same" padding of the Lite backbone is exact.
        raise ModelLoadError(f"input size must be a multiple of 32 in 64..1024, got {request.input_size}")
    if request.weights == "imagenet":
        try:
            weights_file: Path | None = backbone.locate_pretrained()
        except FileNotFoundError as exc:
            raise ModelLoadError(str(exc)) from exc
        label = "imagenet"
    elif request.weights == "none":
        weights_file, label = None, "none"
    else:
        weights_file = Path(request.weights).expanduser()
        if not weights_file.is_file():
            raise ModelLoadError(f"weights file not found: {weights_file}")
        label = f"file:{weights_file.name}"
    card = ModelCard(
        backbone=backbone.name, weights=label, input_size=request.input_size,
        pooling=request.pooling, gem_p=request.gem_p, head_dim=request.head_dim, head=request.head,
        dim=request.head_dim or backbone.channels, threshold=DEFAULT_THRESHOLD,
        mean=backbone.mean, std=backbone.std,
    )
    branch = _assemble(card, weights_file, seed_random=True)
    branch.card = card.with_updates(weights_digest=state_digest(branch))
    return branch


def save_checkpoint(branch: SiameseBranch, directory: Path) -> Path:
    """Writes `card.json` + `weights.pt` into `directory` (the card carries the digest)."""
    directory.mkdir(parents=True, exist_ok=True)
    card = branch.card.with_updates(weights="checkpoint", weights_digest=state_digest(branch))
    branch.card = card
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    torch.save(branch.state_dict(), tmp)
    tmp.replace(directory / WEIGHTS_FILE)
    card.save(directory / CARD_FILE)
    return directory


def load_checkpoint(path: Path) -> SiameseBranch:
    """Restores a branch from a checkpoint directory (or its weights file)."""
    directory = path if path.is_dir() else path.parent
    card_path, weights_path = directory / CARD_FILE, directory / WEIGHTS_FILE
    if not card_path.is_file() or not weights_path.is_file():
        raise ModelLoadError(f"{path} is not a whysim checkpoint (need {CARD_FILE} and {WEIGHTS_FILE})")
    try:
        card = ModelCard.load(card_path)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"unreadable model card {card_path}: {exc}") from exc
    branch = _assemble(card, None, seed_random=True)
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    try:
        branch.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{weights_path} does not match its card: {str(exc).splitlines()[0]}") from exc
    digest = state_digest(branch)
    if card.weights_digest and digest != card.weights_digest:
        raise ModelLoadError(f"{weights_path} does not match the digest in its card (file changed?)")
    branch.card = card.with_updates(weights="checkpoint", weights_digest=digest)
    return branch.eval()


def store_checkpoint_copy(branch: SiameseBranch, models_dir: Path) -> Path:
    """Keeps a copy of a non-reproducible model inside the data directory, keyed by digest."""
    target = models_dir / branch.card.weights_digest[:16]
    if not (target / WEIGHTS_FILE).is_file():
        tmp = models_dir / (target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(branch, tmp)
        tmp.replace(target)
    return target


def load_for_card(card: ModelCard, models_dir: Path) -> SiameseBranch:
    """Rebuilds exactly the model an index was built with, or says why it cannot."""
    if card.weights in ("imagenet", "none"):
        request = ModelRequest(card.backbone, card.weights, card.input_size, card.pooling,
                               card.gem_p, card.head_dim, card.head)
        branch = build_branch(request)
    else:
        stored = models_dir / card.weights_digest[:16]
        if not stored.is_dir():
            raise ModelLoadError(
                f"the index was built with {card.short_name()}, whose checkpoint is missing "
                f"from {models_dir}; rebuild the index with `whysim index DIR --rebuild`")
        branch = load_checkpoint(stored)
    if branch.card.weights_digest != card.weights_digest:
        raise ModelLoadError(
            f"the weights on this machine differ from the ones the index was built with "
            f"({branch.card.weights_digest[:8]} vs {card.weights_digest[:8]}); "
            f"rebuild the index with `whysim index DIR --rebuild`")
    branch.card = card
    return branch


def model_for_index(request: ModelRequest | None, checkpoint: Path | None) -> SiameseBranch:
    if checkpoint is not None:
        return load_checkpoint(checkpoint)
    return build_branch(request or ModelRequest())


__all__ = [
    "DEFAULT_BACKBONE", "DEFAULT_GEM_P", "DEFAULT_INPUT_SIZE", "DEFAULT_POOLING",
    "ModelLoadError", "ModelRequest", "build_branch", "load_checkpoint", "load_for_card",
    "model_for_index", "save_checkpoint", "state_digest", "store_checkpoint_copy",
]
