"""Turning explanation maps into pictures: heatmap overlays and the side-by-side panel."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from search.explaining import PairExplanation, upsample_map

DEFAULT_OPACITY = 0.5
# A map whose peak is below this holds no evidence (e.g. an image paired with itself).
EMPTY_MAP_PEAK = 1e-3


def jet_colours(values: np.ndarray) -> np.ndarray:
    """The classic Grad-CAM 'jet' colour map: 0 -> dark blue, 0.5 -> green, 1 -> dark red."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0])  # red, green, blue
    rgb = np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def heatmap_overlay(image: Image.Image, cam: np.ndarray, opacity: float = DEFAULT_OPACITY) -> Image.Image:
    """Blends the colour heatmap of `cam` (any resolution, [0, 1]) over an RGB image."""
    rgb = image.convert("RGB")
    upsampled = upsample_map(cam, rgb.height, rgb.width)
    heat = jet_colours(upsampled).astype(np.float32)
    base = np.asarray(rgb, dtype=np.float32)
    blended = (1.0 - opacity) * base + opacity * heat
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))


def heatmap_only(cam: np.ndarray, width: int, height: int) -> Image.Image:
    return Image.fromarray(jet_colours(upsample_map(cam, height, width)))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def _fit(image: Image.Image, side: int) -> Image.Image:
    copy = image.convert("RGB")
    copy.thumbnail((side, side), Image.Resampling.BILINEAR)
    return copy


def explanation_panel(query: Image.Image, hit: Image.Image, explanation: PairExplanation,
                      side: int = 256, opacity: float = DEFAULT_OPACITY) -> Image.Image:
    """Two rows (query, hit) x three columns (image, factual overlay, counterfactual overlay)."""
    font = ImageFont.load_default()
    title_h, caption_h, pad = 28, 18, 8
    columns = ("image", f"factual (supports '{explanation.verdict}')",
               f"counterfactual (against '{explanation.verdict}')")
    width = 3 * side + 4 * pad
    height = title_h + 2 * (side + caption_h) + 3 * pad
    panel = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(panel)
    draw.text((pad, pad), f"similarity {explanation.similarity:.3f}, verdict {explanation.verdict} "
                          f"(threshold {explanation.threshold:.2f})", fill="black", font=font)
    for row, (name, picture, maps) in enumerate((("query", query, explanation.query),
                                                   ("hit", hit, explanation.hit))):
        fitted = _fit(picture, side)
        tiles = (fitted, heatmap_overlay(fitted, maps.factual, opacity),
                 heatmap_overlay(fitted, maps.counterfactual, opacity))
        top = title_h + row * (side + caption_h + pad)
        empty = (False, maps.factual.max() < EMPTY_MAP_PEAK, maps.counterfactual.max() < EMPTY_MAP_PEAK)
        for column, (tile, caption) in enumerate(zip(tiles, columns)):
            left = pad + column * (side + pad)
            panel.paste(tile, (left + (side - tile.width) // 2, top + (side - tile.height) // 2))
            note = ": none" if empty[column] else ""
            draw.text((left, top + side + 2), f"{name}: {caption}{note}", fill="black", font=font)
    return panel
