"""Turning explanation maps into pictures: heatmap overlays and the side-by-side panel."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from whysim.indexer.verdicts import match_percent
from whysim.search.explain.correspondence import DEFAULT_MATCHES, BoxMatch, box_matches, shares_of_the_listed
from whysim.search.explain.gradcam import PairExplanation, upsample_map

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


# Colour-blind-friendly (Okabe-Ito) colours for matched pairs, in rank order.
MATCH_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#FFFFFF")
TITLE_SIZE, CAPTION_SIZE, LABEL_SIZE = 18, 14, 13


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's scalable built-in font (FreeType); no font file needed."""
    return ImageFont.load_default(size=size)


PAD, TITLE_H, CAPTION_H, MATCH_GAP = 12, 34, 24, 56  # MATCH_GAP: between the two matched images


def _centre(box: list[int], left: int, top: int) -> tuple[float, float]:
    return left + (box[0] + box[2]) / 2, top + (box[1] + box[3]) / 2


def draw_matches(panel: Image.Image, query: Image.Image, hit: Image.Image, explanation: PairExplanation,
                 origin: tuple[int, int], gap: int, count: int) -> list[BoxMatch]:
    """Pastes query and hit side by side at `origin` and draws the top pairs as numbered,
    colour-matched boxes joined by lines. Returns the matches (boxes in these tiles' pixels)."""
    draw = ImageDraw.Draw(panel)
    left, top = origin
    hit_left = left + query.width + gap
    panel.paste(query, (left, top))
    panel.paste(hit, (hit_left, top))
    matches = box_matches(explanation.correspondence, count, query.size, hit.size)
    font = _font(LABEL_SIZE)
    for match in reversed(matches):  # rank 1 drawn last, on top
        colour = MATCH_COLOURS[(match.rank - 1) % len(MATCH_COLOURS)]
        query_box = [left + match.query_box[0], top + match.query_box[1], left + match.query_box[2] - 1,
                     top + match.query_box[3] - 1]
        hit_box = [hit_left + match.hit_box[0], top + match.hit_box[1], hit_left + match.hit_box[2] - 1,
                   top + match.hit_box[3] - 1]
        draw.line([_centre(match.query_box, left, top), _centre(match.hit_box, hit_left, top)], fill=colour, width=2)
        for box in (query_box, hit_box):
            draw.rectangle(box, outline="black", width=4)
            draw.rectangle(box, outline=colour, width=2)
            label = str(match.rank)
            x0, y0, x1, y1 = draw.textbbox((box[0] + 3, box[1] + 2), label, font=font)
            draw.rectangle([x0 - 2, y0 - 1, x1 + 2, y1 + 1], fill=colour)
            draw.text((box[0] + 3, box[1] + 2), label, fill="black", font=font)
    return matches


def explanation_panel(query: Image.Image, hit: Image.Image, explanation: PairExplanation,
                      side: int = 256, opacity: float = DEFAULT_OPACITY, matches: int = DEFAULT_MATCHES) -> Image.Image:
    """A title; the top matched regions (query and hit side by side, numbered boxes joined by
    lines, and each pair's share of the evidence for or against the match); then two rows (query, hit) x three
    columns (image, factual, counterfactual), one caption under each picture."""
    title_font, caption_font = _font(TITLE_SIZE), _font(CAPTION_SIZE)
    query_fit, hit_fit = _fit(query, side), _fit(hit, side)
    matches_top = TITLE_H + CAPTION_H
    maps_top = matches_top + max(query_fit.height, hit_fit.height) + PAD + CAPTION_H
    row_tops = (maps_top, maps_top + query_fit.height + CAPTION_H + PAD)
    panel = Image.new("RGB", (3 * side + 4 * PAD, row_tops[1] + hit_fit.height + CAPTION_H + PAD), "white")
    draw = ImageDraw.Draw(panel)
    verdict = explanation.verdict
    draw.text((PAD, PAD), f"Match {match_percent(explanation.match)}%: {verdict} (50% and up is similar; "
                          f"cosine {explanation.similarity:.3f})", fill="black", font=title_font)

    draw.text((PAD, TITLE_H + 2), "Matched regions: query (left) and hit (right)", fill="black", font=caption_font)
    found = draw_matches(panel, query_fit, hit_fit, explanation, (PAD, matches_top), MATCH_GAP, matches)
    legend_left = PAD + query_fit.width + MATCH_GAP + hit_fit.width + 2 * PAD
    for index, (match, part) in enumerate(zip(found, shares_of_the_listed(found), strict=True)):
        y = matches_top + index * (CAPTION_SIZE + 8)
        colour = MATCH_COLOURS[(match.rank - 1) % len(MATCH_COLOURS)]
        draw.rectangle([legend_left, y + 2, legend_left + 12, y + 14], fill=colour, outline="black")
        direction = "for" if match.supports else "against"
        draw.text((legend_left + 18, y), f"{match.rank}: {part:.0%} of the listed evidence {direction}",
                  fill="black", font=caption_font)
    draw.text((PAD, maps_top - CAPTION_H), f"Maps ({explanation.method}): evidence for and against the verdict",
              fill="black", font=caption_font)

    columns = ("image", f"factual: for '{verdict}'", f"counterfactual: against '{verdict}'")
    for top, (name, picture, maps) in zip(row_tops, (("Query", query_fit, explanation.query),
                                                      ("Hit", hit_fit, explanation.hit))):
        tiles = (picture, heatmap_overlay(picture, maps.factual, opacity),
                 heatmap_overlay(picture, maps.counterfactual, opacity))
        empty = (False, maps.factual.max() < EMPTY_MAP_PEAK, maps.counterfactual.max() < EMPTY_MAP_PEAK)
        for column, (tile, caption) in enumerate(zip(tiles, columns)):
            left = PAD + column * (side + PAD)
            panel.paste(tile, (left + (side - tile.width) // 2, top))
            note = " (none)" if empty[column] else ""
            draw.text((left, top + tile.height + 4), f"{name} {caption}{note}", fill="black", font=caption_font)
    return panel
