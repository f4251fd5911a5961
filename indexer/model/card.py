"""Model card: everything needed to rebuild a branch and to decide whether two indexes are compatible."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# Cosine similarity at or above which the untrained default calls a pair "similar" when there is
# no collection to judge it against (`whysim explain A B` without an index; searches judge pairs
# against their collection instead: whysim.indexer.verdicts). Measured for ImageNet Lite0 at 448 px with
# GeM (p=3), unwhitened: the one cut with the smallest shortfall from the best balanced accuracy
# on flowers and on rooms together (tests/benchmarks/study_defaults.py; docs/explanations.md "Verdicts").
# Trained models carry their own threshold, chosen on their validation split.
DEFAULT_THRESHOLD = 0.67

CARD_VERSION = 1

# The untrained default; chosen by measurement on flowers and rooms (docs/models-and-training.md "Default model",
# tests/benchmarks/study_defaults.py). The CLI and ModelRequest use these too.
DEFAULT_BACKBONE = "lite0"
# Named input sizes (`--preset`): "detailed" keeps the details that tell look-alike photos
# apart (same-room Recall@1 0.74 -> 0.90 on rooms, with whitening) at about 4x the compute of "fast",
# whysim's earlier default, which suits collections of broad categories at their speed.
INPUT_SIZE_PRESETS = {"detailed": 448, "fast": 224}
DEFAULT_PRESET = "detailed"
DEFAULT_INPUT_SIZE = INPUT_SIZE_PRESETS[DEFAULT_PRESET]
POOLINGS = ("avg", "gem", "max")  # indexer/model/pooling.py
DEFAULT_POOLING = "gem"
DEFAULT_GEM_P = 3.0


@dataclass(frozen=True)
class ModelCard:
    """Describes one Siamese branch. Two cards with the same `identity()` embed identically."""

    backbone: str = DEFAULT_BACKBONE
    weights: str = "imagenet"  # "imagenet", "none", "checkpoint" or a file path
    weights_digest: str = ""
    input_size: int = DEFAULT_INPUT_SIZE
    pooling: str = DEFAULT_POOLING
    gem_p: float = DEFAULT_GEM_P
    head_dim: int | None = None
    head: str = "linear"  # projection head kind (whysim.indexer.model.heads), used when head_dim is set
    dim: int = 0
    threshold: float = DEFAULT_THRESHOLD
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    version: int = CARD_VERSION

    def identity(self) -> dict[str, Any]:
        """The fields that change the embedding; a mismatch means vectors are not comparable."""
        return {
            "backbone": self.backbone,
            "weights_digest": self.weights_digest,
            "input_size": self.input_size,
            "pooling": self.pooling,
            "gem_p": self.gem_p if self.pooling == "gem" else None,
            "head_dim": self.head_dim,
            "head": self.head if self.head_dim else None,
            "dim": self.dim,
        }

    def key(self) -> str:
        """A short digest of `identity()`: names the embedding (e.g. what a fitted verdict rule is for)."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def short_name(self) -> str:
        digest = self.weights_digest[:8] or "random"
        pooling = f"gem{self.gem_p:g}" if self.pooling == "gem" else self.pooling
        head = f"+{'head' if self.head == 'linear' else self.head}{self.head_dim}" if self.head_dim else ""
        return f"{self.backbone}@{self.input_size}/{pooling}{head} ({self.weights}:{digest}, {self.dim}-d)"

    def with_updates(self, **changes: Any) -> ModelCard:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {name for name in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"model card has unknown fields: {sorted(unknown)}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        return cls.from_dict(json.loads(text))

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        return cls.from_json(path.read_text())
