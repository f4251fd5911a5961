"""Top-k search over the served index: by vector, by image (bytes or pixels), or by catalog id.

A neighbour counts only when its catalog row says `indexed`: vectors whose row is gone or
pending (a concurrent `whysim index --prune`, a crash being repaired) are dropped, never
reported. The query itself, and anything with its exact bytes, is left out.

Query vectors go through the index's own whitening (if it has one) before searching, so a hit's
score is the cosine of the same vectors explanations differentiate. Each hit carries a verdict
from the collection's rule (whysim.indexer.verdicts): the normalised score against the rule's cut.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from whysim.indexer.calibration import stored_rule
from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog, ImageInfo
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.datadir import DataDir
from whysim.indexer.imaging import DEFAULT_MAX_PIXELS, ImageRejected
from whysim.indexer.model.card import ModelCard
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.pipeline.reading import model_pixels
from whysim.indexer.runtime.choice import DEFAULT_RUNTIME
from whysim.indexer.vector_stores.choice import open_location
from whysim.indexer.vector_stores.protocol import VectorLocation, VectorStore
from whysim.indexer.verdicts import Verdict, VerdictJudge, VerdictRule
from whysim.search.explain.gradcam import PairExplanation
from whysim.search.serving.decode_budget import DecodeBudget, decode_cost
from whysim.search.serving.index_snapshot import IndexWatcher, ServedIndex
from whysim.search.serving.model_host import DEFAULT_QUEUE_SIZE, ModelHost
from whysim.search.serving.pictures import (
    DEFAULT_DISPLAY_SIDE,
    ImageUnavailable,
    Picture,
    bytes_digest,
    read_collection_file,
    read_picture,
)

MAX_IMAGE_ID = 2**63 - 1  # SQLite INTEGER and FAISS int64
FETCH_SLACK = 8  # extra neighbours fetched so that a few dropped ones still leave a full page
ROW_LOOKUP_CHUNK = 500


def model_key(card: ModelCard, whitening: Whitening | None = None) -> str:
    """Names the embedding a card describes (weights, input size, pooling...) and the collection's
    whitening after it: keys query caches, and says which embedding a fitted verdict rule is for."""
    identity = {**card.identity(), "whitening": whitening.digest() if whitening is not None else None}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class IndexNotReady(RuntimeError):
    """There is nothing to search yet (no index, no model, or a rebuild in progress)."""


class UnknownImage(LookupError):
    """No catalog row has this id."""


class NotSearchable(LookupError):
    """The image is catalogued but has no vector (pending, failed, or not in the served index yet)."""


@dataclass(frozen=True)
class Hit:
    image: ImageInfo
    score: float  # cosine similarity
    verdict: Verdict | None = None

    @property
    def id(self) -> int:
        return self.image.id

    def to_dict(self) -> dict[str, object]:
        verdict = self.verdict
        return {"id": self.image.id, "path": self.image.path, "label": self.image.label,
                "score": round(self.score, 6),
                "verdict": None if verdict is None else ("similar" if verdict.similar else "dissimilar"),
                "verdict_score": None if verdict is None else round(verdict.score, 4),
                "match": None if verdict is None else round(verdict.match, 4)}


@dataclass(frozen=True)
class SearchPage:
    hits: list[Hit]
    offset: int
    k: int
    next_offset: int | None  # None: there is nothing after this page


@dataclass(frozen=True)
class SearchQuery:
    vector: np.ndarray  # (dim,) float32, L2-normalised
    exclude_ids: frozenset[int] = frozenset()
    exclude_sha: str | None = None  # hits with exactly these bytes are the query itself


@dataclass(frozen=True)
class UploadedQuery:
    digest: str  # SHA-256 of the uploaded bytes
    picture: Picture
    query: SearchQuery
    model_key: str  # the model that embedded it (see model_key); the vector is meaningless for others


class SearchEngine:
    def __init__(self, datadir: DataDir, catalog: Catalog, watcher: IndexWatcher, models: ModelHost,
                 upload_max_pixels: int = DEFAULT_MAX_PIXELS, display_side: int = DEFAULT_DISPLAY_SIDE,
                 location: VectorLocation | None = None, decode_budget: DecodeBudget | None = None) -> None:
        self.datadir = datadir
        self.catalog = catalog
        self.watcher = watcher
        self.models = models
        self.upload_max_pixels = upload_max_pixels
        self.display_side = display_side
        self.location = location
        self.decode_budget = decode_budget or DecodeBudget()

    @classmethod
    def open(cls, datadir: DataDir, device: str = "cpu", upload_max_pixels: int = DEFAULT_MAX_PIXELS,
             display_side: int = DEFAULT_DISPLAY_SIDE, check_interval_s: float = 0.0,
             model_queue_size: int = DEFAULT_QUEUE_SIZE, decode_budget: DecodeBudget | None = None,
             runtime: str = DEFAULT_RUNTIME) -> SearchEngine:
        """Opens the catalog now; the index is read on first use and the model on first embedding."""
        catalog = Catalog(open_catalog_engine(datadir.catalog_url))
        location = open_location(datadir, catalog)
        watcher = IndexWatcher(location, catalog.active_model, check_interval_s)
        models = ModelHost(datadir.models_dir, device, model_queue_size, runtime, datadir.runtime_cache_dir)
        return cls(datadir, catalog, watcher, models, upload_max_pixels, display_side, location, decode_budget)

    def close(self) -> None:
        self.models.close()
        if self.location is not None:
            self.location.close()
        self.catalog.engine.dispose()

    # ------------------------------------------------------------------ state

    @property
    def model_key(self) -> str:
        """model_key() of the model (and whitening) behind the served index."""
        snapshot = self.snapshot()
        return model_key(snapshot.card, snapshot.store.whitening)

    def verdict_rule(self) -> VerdictRule:
        """The collection's rule: one fitted on its labels for this embedding, else the default."""
        return stored_rule(self.catalog, self.snapshot().card)

    def judge(self) -> VerdictJudge:
        return VerdictJudge(self.snapshot().cohort, self.verdict_rule())

    def final_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Branch vectors as the index holds them: through its whitening, if it has one."""
        whitening = self.snapshot().store.whitening
        return whitening.apply(vectors) if whitening is not None else vectors

    def snapshot(self) -> ServedIndex:
        """The index being served; raises IndexNotReady when it cannot be searched."""
        snapshot = self.watcher.current()
        if snapshot.served is None:
            raise IndexNotReady(snapshot.problem or "no index yet")
        return snapshot.served

    def image(self, image_id: int) -> ImageInfo:
        info = self.catalog.get_image(image_id) if 0 < image_id <= MAX_IMAGE_ID else None
        if info is None:
            raise UnknownImage(f"no image with id {image_id}")
        return info

    def picture_of(self, info: ImageInfo) -> Picture:
        """An indexed image's pixels and display copy, read from its file inside its collection."""
        input_size = self.snapshot().card.input_size
        try:
            return read_picture(read_collection_file(info), input_size, self.display_side)
        except ImageRejected as exc:
            raise ImageUnavailable(f"image {info.id} cannot be decoded: {exc}") from exc

    def explain(self, query: Picture, hits: Sequence[Picture]) -> list[PairExplanation]:
        snapshot = self.snapshot()
        return self.models.explain(snapshot.card, query.pixels, torch.stack([hit.pixels for hit in hits]),
                                   snapshot.store.whitening, self.judge())

    # ---------------------------------------------------------------- queries

    def upload(self, data: bytes) -> UploadedQuery:
        """Decodes and embeds uploaded bytes; raises ImageRejected (ImageTooLarge) for bad ones, and
        DecodeBusy when the decode budget stays full (see search/serving/decode_budget.py)."""
        card = self.snapshot().card
        cost = decode_cost(data, min(card.input_size, self.display_side), self.upload_max_pixels)
        with self.decode_budget.reserve(cost):
            picture = read_picture(data, card.input_size, self.display_side, self.upload_max_pixels)
        digest = bytes_digest(data)
        vector = self.final_vectors(self.models.embed(card, picture.pixels[None]))[0]
        return UploadedQuery(digest, picture, SearchQuery(vector, exclude_sha=digest), self.model_key)

    def query_for_id(self, image_id: int) -> SearchQuery:
        return self.query_for_image(self.image(image_id))

    def query_for_image(self, info: ImageInfo) -> SearchQuery:
        """The stored vector of an indexed image (a duplicate uses its original's), itself excluded."""
        image_id = info.id
        source_id = info.duplicate_of_id if info.status == ImageStatus.DUPLICATE.value else info.id
        vector = None
        if info.status in (ImageStatus.INDEXED.value, ImageStatus.DUPLICATE.value) and source_id is not None:
            vector = self.snapshot().store.reconstruct(source_id)
        if vector is None:
            reason = f": {info.error}" if info.error else ""
            raise NotSearchable(f"image {image_id} has no vector in the index (status {info.status}{reason})")
        return SearchQuery(vector, frozenset({info.id, source_id}), info.sha256)

    # ----------------------------------------------------------------- search

    def search(self, query: SearchQuery, k: int = 10, offset: int = 0, min_score: float | None = None) -> SearchPage:
        if k < 1 or offset < 0:
            raise ValueError(f"k must be at least 1 and offset at least 0 (got k={k}, offset={offset})")
        store = self.snapshot().store
        wanted = offset + k + 1  # one more than the page, to know whether another page follows
        fetch = wanted + len(query.exclude_ids) + FETCH_SLACK
        while True:
            fetch = min(fetch, len(store))
            accepted, exhausted = self._neighbours(store, query, fetch, min_score)
            if len(accepted) >= wanted or exhausted:
                break
            fetch *= 2
        page = self._with_verdicts(store, query, accepted[offset:offset + k])
        return SearchPage(page, offset, k, offset + k if len(accepted) > offset + k else None)

    def _with_verdicts(self, store: VectorStore, query: SearchQuery, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        vectors = [store.reconstruct(hit.id) for hit in hits]
        if any(vector is None for vector in vectors):  # replaced meanwhile: judge what we can't, not at all
            return hits
        verdicts = self.judge().judge(query.vector, np.stack(vectors), np.array([hit.score for hit in hits]))
        return [Hit(hit.image, hit.score, verdict) for hit, verdict in zip(hits, verdicts, strict=True)]

    def _neighbours(self, store: VectorStore, query: SearchQuery, fetch: int,
                    min_score: float | None) -> tuple[list[Hit], bool]:
        """The acceptable hits among the `fetch` nearest, and whether no further ones exist."""
        if fetch == 0:
            return [], True
        scores, ids = store.search(query.vector, fetch)
        found = [(int(i), min(1.0, max(-1.0, float(s)))) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        exhausted = len(found) < fetch or fetch >= len(store)
        if min_score is not None:
            exhausted = exhausted or any(score < min_score for _, score in found)
            found = [(i, score) for i, score in found if score >= min_score]
        found = [(i, score) for i, score in found if i not in query.exclude_ids]
        rows = self._rows([i for i, _ in found])
        hits = [Hit(rows[i], score) for i, score in found
                if i in rows and rows[i].status == ImageStatus.INDEXED.value
                and (query.exclude_sha is None or rows[i].sha256 != query.exclude_sha)]
        return hits, exhausted

    def _rows(self, ids: list[int]) -> dict[int, ImageInfo]:
        rows: dict[int, ImageInfo] = {}
        for start in range(0, len(ids), ROW_LOOKUP_CHUNK):
            rows.update(self.catalog.get_images(ids[start:start + ROW_LOOKUP_CHUNK]))
        return rows

    # ------------------------------------------------------------ convenience

    def search_by_id(self, image_id: int, k: int = 10, offset: int = 0, min_score: float | None = None) -> SearchPage:
        return self.search(self.query_for_id(image_id), k, offset, min_score)

    def search_by_image(self, image: bytes | Image.Image | np.ndarray, k: int = 10, offset: int = 0,
                        min_score: float | None = None) -> SearchPage:
        """Bytes are a file's content (decoded like the indexer does); pixels are RGB (H, W, 3)."""
        if isinstance(image, (bytes, bytearray)):
            return self.search(self.upload(bytes(image)).query, k, offset, min_score)
        card = self.snapshot().card
        picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        pixels = model_pixels(picture.convert("RGB"), card.input_size)
        vector = self.final_vectors(self.models.embed(card, pixels[None]))[0]
        return self.search(SearchQuery(vector), k, offset, min_score)
