"""Loss direction: pulling positives together and pushing negatives apart lowers the loss,
and one gradient step does exactly that."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from whysim.indexer.training.losses import ContrastiveLoss, SupConLoss


def at_angle(degrees: float) -> torch.Tensor:
    radians = math.radians(degrees)
    return torch.tensor([[math.cos(radians), math.sin(radians)]])


def test_contrastive_hand_values() -> None:
    loss = ContrastiveLoss(margin=1.0)
    origin = at_angle(0)
    # 60 degrees apart: distance sqrt(2 - 2 cos 60) = 1
    assert loss(origin, at_angle(60), torch.tensor([True])).item() == pytest.approx(1.0, abs=1e-6)
    assert loss(origin, at_angle(60), torch.tensor([False])).item() == pytest.approx(0.0, abs=1e-6)
    # 30 degrees: d^2 = 2 - 2 cos 30
    d2 = 2 - 2 * math.cos(math.radians(30))
    assert loss(origin, at_angle(30), torch.tensor([True])).item() == pytest.approx(d2, abs=1e-6)
    assert loss(origin, at_angle(30), torch.tensor([False])).item() == pytest.approx((1 - math.sqrt(d2)) ** 2, abs=1e-6)


@pytest.mark.parametrize("same", [True, False])
def test_contrastive_direction(same: bool) -> None:
    loss = ContrastiveLoss(margin=1.0)
    target = torch.tensor([same])
    values = [loss(at_angle(0), at_angle(angle), target).item() for angle in (10, 25, 40)]
    assert values == sorted(values, reverse=not same)  # positives: closer is cheaper; negatives: farther


def cosine_after_step(loss_fn, same: bool) -> tuple[float, float]:
    left = at_angle(0).requires_grad_(True)
    right = at_angle(40).requires_grad_(True)
    before = F.cosine_similarity(left, right).item()
    loss_fn(left, right, torch.tensor([same])).backward()
    with torch.no_grad():
        moved_left, moved_right = left - 0.1 * left.grad, right - 0.1 * right.grad
    return before, F.cosine_similarity(moved_left, moved_right).item()


def test_contrastive_gradient_sign() -> None:
    before, after = cosine_after_step(ContrastiveLoss(1.0), same=True)
    assert after > before
    before, after = cosine_after_step(ContrastiveLoss(1.0), same=False)
    assert after < before


def test_contrastive_negative_inside_margin_keeps_gradient() -> None:
    left = at_angle(0).requires_grad_(True)
    ContrastiveLoss(1.0)(left, at_angle(1), torch.tensor([False])).backward()
    assert left.grad.abs().sum() > 0


def embeddings(angles: list[float]) -> torch.Tensor:
    return torch.cat([at_angle(a) for a in angles]).requires_grad_(True)


def test_supcon_prefers_tight_separated_classes() -> None:
    loss = SupConLoss(temperature=0.1)
    labels = torch.tensor([0, 0, 1, 1])
    good = loss(embeddings([0, 5, 90, 95]), labels).item()
    mixed = loss(embeddings([0, 90, 5, 95]), labels).item()
    assert good < mixed


def test_supcon_gradient_pulls_positives_and_pushes_negatives() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    vectors = embeddings([0, 40, 60, 100])
    SupConLoss(0.1)(vectors, labels).backward()
    with torch.no_grad():
        moved = F.normalize(vectors - 0.05 * vectors.grad, dim=1)
        before = F.normalize(vectors, dim=1)
    cos = lambda v, i, j: float(v[i] @ v[j])  # noqa: E731
    assert cos(moved, 0, 1) > cos(before, 0, 1)  # positive pair closer
    assert cos(moved, 1, 2) < cos(before, 1, 2)  # nearest negative pair farther


def test_supcon_needs_a_positive() -> None:
    with pytest.raises(ValueError, match="same label"):
        SupConLoss()(embeddings([0, 90]), torch.tensor([0, 1]))
