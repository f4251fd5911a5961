"""Train/validation/test split by seed, stratified by class, with byte-identical files kept together.

Copies of the same bytes always land in the same split (a copy in train and another in
test would leak the answer). Each class is split on its own, so every split keeps the
class proportions; a group of copies filed under several classes counts for the first.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whysim.indexer.training.collection import LabelledCollection, LabelledImage

SPLITS = ("train", "validation", "test")
SPLIT_FILE = "split.json"
SPLIT_VERSION = 1


@dataclass(frozen=True)
class Split:
    seed: int
    fractions: dict[str, float]
    data_digest: str
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def of(self, name: str) -> tuple[str, ...]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return self.paths.get(name, ())

    def counts(self) -> dict[str, int]:
        return {name: len(self.of(name)) for name in SPLITS}

    def to_dict(self) -> dict[str, Any]:
        return {"version": SPLIT_VERSION, "seed": self.seed, "fractions": self.fractions,
                "data_digest": self.data_digest, "counts": self.counts(),
                "paths": {name: list(self.of(name)) for name in SPLITS}}

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Split:
        try:
            data = json.loads(path.read_text())
            paths = {name: tuple(str(p) for p in data["paths"][name]) for name in SPLITS}
            return cls(int(data["seed"]), {k: float(v) for k, v in data["fractions"].items()},
                       str(data["data_digest"]), paths)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a whysim split file: {exc}") from exc


def _class_rng(seed: int, label: str) -> np.random.Generator:
    # Seeded per class name, so adding a class does not reshuffle the others.
    key = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "little"))


def split_collection(collection: LabelledCollection, validation: float = 0.15, test: float = 0.15,
                     seed: int = 0) -> Split:
    if validation < 0 or test < 0 or validation + test >= 1:
        raise ValueError(f"validation ({validation}) and test ({test}) fractions must be >= 0 "
                         f"and leave something to train on")
    groups: dict[str, list[LabelledImage]] = {}
    for image in collection.images:
        groups.setdefault(image.sha256, []).append(image)
    strata: dict[str, list[list[LabelledImage]]] = {}
    for members in groups.values():
        members.sort(key=lambda image: image.path)
        strata.setdefault(min(image.label for image in members), []).append(members)

    assigned: dict[str, list[str]] = {name: [] for name in SPLITS}
    for label in sorted(strata):
        class_groups = sorted(strata[label], key=lambda members: members[0].path)
        order = _class_rng(seed, label).permutation(len(class_groups))
        total = sum(len(members) for members in class_groups)
        targets = {"test": round(total * test), "validation": round(total * validation)}
        filled = {"test": 0, "validation": 0}
        for position in order:
            members = class_groups[position]
            name = next((n for n in ("test", "validation") if filled[n] < targets[n]), "train")
            if name != "train":
                filled[name] += len(members)
            assigned[name].extend(image.path for image in members)
    fractions = {"train": round(1 - validation - test, 6), "validation": validation, "test": test}
    return Split(seed, fractions, collection.digest(),
                 {name: tuple(sorted(paths)) for name, paths in assigned.items()})
