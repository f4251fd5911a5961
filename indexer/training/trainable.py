"""The branch split for training: a frozen trunk and a trainable tail.

The tail is the last `trainable_stages` modules of the backbone (0: none; for Lite0, 1 is
the final 1x1 convolution, 2 adds the last MBConv block, ...), then pooling and the
projection head. BatchNorm layers keep their ImageNet statistics (the branch stays in
eval mode): batches of a few dozen images from one collection would only make them noisy.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.model.fusion import fold_batchnorm
from whysim.indexer.runtime.torch_session import retain_freed_memory

# Images per forward pass of the frozen trunk on CPU. The feature cache feeds it a batch of images
# times their views (32 x 3 at the defaults); in one pass at 448 px their activations took
# 8.8 GB of resident memory (`whysim train` on 60 flowers photos), in passes of 8 they take a
# tenth of that, at the same images/s (a CPU gains nothing from larger batches here).
CPU_TRUNK_IMAGES = 8


class TrainableBranch:
    def __init__(self, branch: SiameseBranch, trainable_stages: int) -> None:
        if trainable_stages < 0:
            raise ValueError(f"trainable stages must be >= 0, got {trainable_stages}")
        self.branch = branch.eval()
        self.cut = max(0, len(branch.features) - trainable_stages)
        self.trunk = branch.features[:self.cut]
        self.tail = branch.features[self.cut:]
        # The frozen trunk only ever runs forward: a BatchNorm-folded copy computes the same
        # features faster. The branch keeps the unfolded modules, which checkpoints save.
        self._folded_trunk, _ = fold_batchnorm(self.trunk, branch.input_size) if self.cut else (self.trunk, 0)
        for parameter in branch.parameters():
            parameter.requires_grad_(False)
        for parameter in self.backbone_parameters() + self.head_parameters():
            parameter.requires_grad_(True)

    @property
    def device(self) -> torch.device:
        return self.branch.input_mean.device

    def to(self, device: torch.device) -> TrainableBranch:
        if device.type == "cpu":
            retain_freed_memory()  # else page faults cost more than the convolutions (see there)
        # channels_last as in the indexer's Embedder: faster convolutions on CPU and CUDA
        self.branch.to(device).to(memory_format=torch.channels_last)
        self._folded_trunk.to(device).to(memory_format=torch.channels_last)
        return self

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.tail.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.branch.head.parameters()]

    def trunk_maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (B, 3, S, S) -> frozen features at the cut point; never differentiated."""
        step = CPU_TRUNK_IMAGES if self.device.type == "cpu" else max(1, len(pixels))
        maps = []
        with torch.no_grad():
            for start in range(0, len(pixels), step):
                part = pixels[start:start + step].to(self.device, non_blocking=True)
                part = part.contiguous(memory_format=torch.channels_last)
                maps.append(self._folded_trunk(self.branch.normalize_input(part)))
        return torch.cat(maps)

    def embed_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """Features at the cut point -> L2-normalised embeddings, differentiable w.r.t. the tail."""
        maps = maps.to(self.device, non_blocking=True)
        return self.branch.embed_feature_maps(self.tail(maps))

    def trainable_state(self) -> dict[str, torch.Tensor]:
        names = {id(p) for p in self.backbone_parameters() + self.head_parameters()}
        return {name: copy.deepcopy(tensor.detach()).cpu()
                for name, tensor in self.branch.state_dict(keep_vars=True).items() if id(tensor) in names}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.branch.load_state_dict(state, strict=False)
