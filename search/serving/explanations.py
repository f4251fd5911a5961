"""Explanations on demand: resolves the query (an upload held by digest, or an indexed image) and
the hit, computes their paired Grad-CAM maps once per (query, hit, model), renders overlays."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from PIL import Image

from whysim.search.explain.gradcam import PairExplanation, SideMaps
from whysim.search.explain.overlays import heatmap_only, heatmap_overlay
from whysim.search.serving.cache import LRUCache
from whysim.search.serving.engine import SearchEngine
from whysim.search.serving.pictures import Picture, image_version
from whysim.search.serving.uploads import UploadCache

DEFAULT_EXPLANATION_CACHE_SIZE = 256
DEFAULT_PICTURE_CACHE_SIZE = 64
SIDES = ("query", "hit")
KINDS = ("factual", "counterfactual")
# blended: the map over the image; heatmap: the colour map alone, for clients that blend it themselves.
STYLES = ("blended", "heatmap")


@dataclass(frozen=True)
class ExplainedImage:
    key: str  # the upload's digest, or the image id as text
    picture: Picture
    version: str  # changes when the content changes
    uploaded: bool = False


@dataclass(frozen=True)
class ExplainedPair:
    query: ExplainedImage
    hit_id: int
    hit: ExplainedImage
    explanation: PairExplanation
    version: str  # changes when the model or either image changes: versions overlay URLs

    def maps(self, side: str) -> SideMaps:
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}")
        return self.explanation.query if side == "query" else self.explanation.hit

    def overlay(self, side: str, kind: str, style: str = "blended") -> Image.Image:
        """The map blended over the displayed image (EXIF-corrected, at most the display side),
        or with style "heatmap" the colour map alone, the size of that displayed image."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}")
        maps = self.maps(side)
        display = (self.query.picture if side == "query" else self.hit.picture).display
        cam = maps.factual if kind == "factual" else maps.counterfactual
        if style == "heatmap":
            return heatmap_only(cam, display.width, display.height)
        return heatmap_overlay(display, cam)


class Explanations:
    def __init__(self, engine: SearchEngine, uploads: UploadCache,
                 cache_size: int = DEFAULT_EXPLANATION_CACHE_SIZE,
                 picture_cache_size: int = DEFAULT_PICTURE_CACHE_SIZE) -> None:
        self.engine = engine
        self.uploads = uploads
        self.cache: LRUCache[PairExplanation] = LRUCache(cache_size)
        self.pictures: LRUCache[Picture] = LRUCache(picture_cache_size)

    def indexed_image(self, image_id: int) -> ExplainedImage:
        info = self.engine.image(image_id)
        version = image_version(info)
        key = (info.id, version, self.engine.model_key)  # the model decides the pixels' size
        picture = self.pictures.get(key)
        if picture is None:
            picture = self.engine.picture_of(info)
            self.pictures.put(key, picture)
        return ExplainedImage(str(info.id), picture, version)

    def query_image(self, ref: str | int) -> ExplainedImage:
        """An image id, or an upload's digest (see parse_query_ref); raises QueryExpired, UnknownImage."""
        if isinstance(ref, int):
            return self.indexed_image(ref)
        uploaded = self.uploads.get(ref, self.engine.model_key)
        return ExplainedImage(uploaded.digest, uploaded.picture, uploaded.digest[:16], uploaded=True)

    def explain(self, query_ref: str | int, hit_id: int) -> ExplainedPair:
        query = self.query_image(query_ref)
        hit = self.indexed_image(hit_id)
        # The rule is part of the key: calibrating the collection changes verdicts, hence maps.
        key = (query.key, query.version, hit_id, hit.version, self.engine.model_key,
               self.engine.verdict_rule().to_json())
        explanation = self.cache.get(key)
        if explanation is None:
            explanation = self.engine.explain(query.picture, [hit.picture])[0]
            self.cache.put(key, explanation)
        version = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        return ExplainedPair(query, hit_id, hit, explanation, version)
