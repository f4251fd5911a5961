"""Batched preprocessing on the embedding device: JPEG decode, EXIF orientation, resize.

The same code runs on CUDA (nvJPEG) and on CPU (libjpeg-turbo through torchvision), which is
how tests check it against the PIL reader. The resize reproduces PIL's BILINEAR filter, a
triangle whose support widens with the reduction factor (so it is antialiased), as two
matrix products per image; images of any size then resize together, as one batched matmul
over a zero-padded canvas, instead of one interpolate call per image.
"""
from __future__ import annotations

import warnings

import torch
from torchvision.io import ImageReadMode, decode_jpeg

# torchvision 0.29 deprecates its decoders in favour of TorchCodec; we pin torchvision and
# keep the call in this one module, so the notice would only repeat on every batch.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def decode_jpegs(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """(3, H, W) uint8 RGB images on `device`; None for a file the decoder refuses.

    One call decodes the batch; when it fails (one bad file fails it all), each file is
    decoded alone so that only the bad ones drop out.
    """
    if not files:
        return []
    try:
        return list(decode_jpeg(files, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        decoded: list[torch.Tensor | None] = []
        for data in files:
            try:
                decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
        return decoded


def apply_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turns a (C, H, W) image upright from its EXIF orientation, as PIL's exif_transpose."""
    if orientation == 2:
        return image.flip(2)
    if orientation == 3:
        return image.flip(1, 2)
    if orientation == 4:
        return image.flip(1)
    if orientation == 5:
        return image.transpose(1, 2)
    if orientation == 6:
        return image.rot90(-1, dims=(1, 2))
    if orientation == 7:
        return image.transpose(1, 2).flip(1, 2)
    if orientation == 8:
        return image.rot90(1, dims=(1, 2))
    return image


def bilinear_weights(lengths: torch.Tensor, out_size: int, padded: int) -> torch.Tensor:
    """(B, out_size, padded) resampling rows of PIL's BILINEAR filter, one set per input length.

    Mirrors Pillow's precompute_coeffs: output pixel i is centred at (i + 0.5) * scale, the
    triangle's support is max(scale, 1), taps outside [xmin, xmax) are dropped and each row
    sums to one. Columns past an image's own length are zero, so padding never leaks in.
    """
    device = lengths.device
    length = lengths.to(torch.float32)[:, None, None]
    scale = length / out_size
    support = scale.clamp(min=1.0)
    centre = (torch.arange(out_size, device=device, dtype=torch.float32)[None, :, None] + 0.5) * scale
    taps = torch.arange(padded, device=device, dtype=torch.float32)[None, None, :]
    low = torch.trunc(centre - support + 0.5).clamp(min=0)
    high = torch.minimum(torch.trunc(centre + support + 0.5), length)
    weights = (1.0 - ((taps - centre + 0.5) / support).abs()).clamp(min=0)
    weights = torch.where((taps >= low) & (taps < high), weights, torch.zeros_like(weights))
    return weights / weights.sum(dim=2, keepdim=True)


def resize_group(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """(B, 3, size, size) uint8: every image resized whole (no crop) in one batched product."""
    device = images[0].device
    heights = [image.shape[1] for image in images]
    widths = [image.shape[2] for image in images]
    canvas = torch.zeros((len(images), 3, max(heights), max(widths)), dtype=torch.float32, device=device)
    for row, image in enumerate(images):
        canvas[row, :, :image.shape[1], :image.shape[2]] = image
    rows = bilinear_weights(torch.tensor(heights, device=device), size, canvas.shape[2])[:, None]  # (B, 1, S, H)
    cols = bilinear_weights(torch.tensor(widths, device=device), size, canvas.shape[3]).transpose(1, 2)[:, None]
    resized = torch.matmul(torch.matmul(rows, canvas), cols)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def resize_images(images: list[torch.Tensor], size: int, max_canvas_pixels: int) -> torch.Tensor:
    """Resizes images of any sizes to (N, 3, size, size) uint8, in input order.

    Images are sorted by area and grouped so that no padded canvas holds more than
    `max_canvas_pixels` pixels: one huge photo does not make the whole batch's canvas huge.
    """
    if not images:
        raise ValueError("no images to resize")
    order = sorted(range(len(images)), key=lambda i: images[i].shape[1] * images[i].shape[2])
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=images[0].device)
    group: list[int] = []
    tallest = widest = 0
    for index in order + [-1]:
        if index >= 0:
            height, width = images[index].shape[1:]
            grown = (len(group) + 1) * max(tallest, height) * max(widest, width)
            if not group or grown <= max_canvas_pixels:
                group.append(index)
                tallest, widest = max(tallest, height), max(widest, width)
                continue
        out[torch.tensor(group, device=out.device)] = resize_group([images[i] for i in group], size)
        if index >= 0:
            group, tallest, widest = [index], images[index].shape[1], images[index].shape[2]
    return out
