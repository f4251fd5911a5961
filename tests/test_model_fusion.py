"""Folding BatchNorm into convolutions for inference: same vectors, no BatchNorm left, and a
fold that would change the output is refused."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from whysim.indexer.model.fusion import fold_batchnorm
from whysim.indexer.model.loading import ModelRequest, build_branch

SIZE = 64


def count(module: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(child, kind) for child in module.modules())


def randomise_batchnorm(module: nn.Module, seed: int) -> None:
    """Non-trivial statistics: a random-init BatchNorm is the identity, and folding it proves nothing."""
    generator = torch.Generator().manual_seed(seed)
    for norm in module.modules():
        if isinstance(norm, nn.BatchNorm2d):
            shape = norm.running_mean.shape
            norm.running_mean.copy_(torch.rand(shape, generator=generator) * 2 - 1)
            norm.running_var.copy_(torch.rand(shape, generator=generator) * 1.5 + 0.5)
            norm.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            norm.bias.data.copy_(torch.rand(shape, generator=generator) - 0.5)


@pytest.mark.parametrize(("backbone", "weights"), [("lite0", "imagenet"), ("mobilenet_v2", "none"),
                                                   ("resnet50", "none")])
def test_folding_removes_every_batchnorm_and_keeps_the_vectors(backbone: str, weights: str) -> None:
    branch = build_branch(ModelRequest(backbone=backbone, weights=weights, input_size=SIZE)).eval()
    randomise_batchnorm(branch, seed=1)
    original = copy.deepcopy(branch)
    target = branch.target_layer_name
    norms = count(branch, nn.BatchNorm2d)

    assert branch.fold_batchnorm() == norms > 0
    assert count(branch, nn.BatchNorm2d) == 0 and branch.target_layer_name == target
    pixels = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)) * 255
    with torch.inference_mode():
        expected, got = original(pixels), branch(pixels)
        expected_maps, got_maps = original.feature_maps(pixels), branch.feature_maps(pixels)
    assert torch.allclose(got_maps, expected_maps, rtol=1e-4, atol=1e-4 * float(expected_maps.abs().max()))
    assert float((expected * got).sum(dim=1).min()) > 0.99999
    assert branch.fold_batchnorm() == 0  # nothing left to fold


def test_lite0_same_padding_is_folded_into_the_convolutions_where_symmetric() -> None:
    branch = build_branch(ModelRequest(input_size=SIZE)).eval()
    pads = count(branch, nn.ZeroPad2d)
    branch.fold_batchnorm()
    # Only the stride-2 convolutions keep an explicit pad: TF "same" pads them one more on
    # the right and bottom than on the left and top, which conv's own padding cannot say.
    strided = [module for module in branch.modules() if isinstance(module, nn.Conv2d)
               and tuple(module.stride) == (2, 2)]
    assert count(branch, nn.ZeroPad2d) == len(strided) < pads


class NormBeforeConv(nn.Module):
    """Registers a conv then a BatchNorm of its width, but normalises the input instead."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


def test_a_fold_that_changes_the_output_is_refused() -> None:
    torch.manual_seed(0)
    features = nn.Sequential(NormBeforeConv()).eval()
    randomise_batchnorm(features, seed=3)
    kept, folded = fold_batchnorm(features, SIZE)
    assert folded == 0 and kept is features and count(kept, nn.BatchNorm2d) == 1


def test_folding_leaves_the_original_modules_in_their_modes() -> None:
    branch = build_branch(ModelRequest(input_size=SIZE)).eval()
    trunk = branch.features[:3]  # a fresh Sequential: in training mode, its modules in eval mode
    branch.features[1].train()
    modes = [module.training for module in branch.modules()]
    folded, count = fold_batchnorm(trunk, SIZE)
    assert count > 0 and not any(module.training for module in folded.modules())
    assert [module.training for module in branch.modules()] == modes
