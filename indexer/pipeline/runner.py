"""Runs one `whysim index`: owns the model, the store, the loop, the progress bar and the report."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.collection_kind import settle_collection_kind
from whysim.indexer.datadir import DataDir
from whysim.indexer.errors import ModelMismatch, NoImagesFound
from whysim.indexer.imaging import DEFAULT_MAX_PIXELS
from whysim.indexer.index_kinds import INDEX_KINDS, INDEX_TYPE_SETTING, choose_index_kind
from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.model.card import ModelCard
from whysim.indexer.model.loading import load_for_card, store_checkpoint_copy
from whysim.indexer.pipeline.background_writing import BackgroundChunkWriter
from whysim.indexer.pipeline.embedding import Embedder, resolve_device
from whysim.indexer.pipeline.options import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, DECODERS, ENGINES, default_workers
from whysim.indexer.pipeline.outcomes import record_outcomes
from whysim.indexer.pipeline.planning import WorkItem, plan_collection
from whysim.indexer.pipeline.reading import (
    ImageFileDataset,
    ReadBatch,
    ReadRequest,
    ReadResult,
    collate_reads,
    init_reader_worker,
)
from whysim.indexer.pipeline.reconcile import reconcile
from whysim.indexer.pipeline.threaded_reading import ThreadedBatchReader
from whysim.indexer.pipeline.whitening_policy import remember_choice, settle_whitening
from whysim.indexer.pipeline.writing import ChunkWriter
from whysim.indexer.runtime.choice import DEFAULT_RUNTIME, resolve_runtime
from whysim.indexer.scanning import IMAGE_EXTENSIONS, scan_collection
from whysim.indexer.vector_stores.choice import open_location, switches_store
from whysim.indexer.vector_stores.protocol import VectorLocation, VectorStore

logger = logging.getLogger(__name__)

# On CPU, 32 embeds as fast as 64 (tests/benchmarks/bench_index_throughput.py) with less
# memory: at 224x224 a flowers run peaks at 1.9-2.1 GB resident against 2.3-3.3 GB.
MAX_PASSES = 3
FAILURES_LISTED = 5  # unreadable files named in the summary; `whysim stats --failed` lists all


class IndexingInterrupted(RuntimeError):
    """Ctrl-C: everything embedded so far was saved; a rerun continues."""

    def __init__(self, report: IndexReport) -> None:
        super().__init__("interrupted")
        self.report = report


def indexing_workers(requested: int | None, device_type: str) -> int:
    """Decoding worker processes for an embedding pass. None (auto): none on CPU, where decoding
    runs in a thread of this process instead (threaded_reading says why), default_workers() on CUDA."""
    if requested is not None:
        return requested
    return 0 if device_type == "cpu" else default_workers()


@dataclass(frozen=True)
class IndexOptions:
    device: str = "auto"
    runtime: str = DEFAULT_RUNTIME  # of the forward pass on CPU (whysim.indexer.runtime.choice)
    batch_size: int = 0  # 0: CPU_BATCH_SIZE on CPU, CUDA_BATCH_SIZE on CUDA
    workers: int | None = None  # decoding worker processes; None: indexing_workers decides
    chunk_size: int = 1024
    flush_seconds: float = 30.0
    prune: bool = False
    rebuild: bool = False
    index_type: str = "auto"
    decoder: str = "auto"  # pil: DataLoader workers; device: batched on the embedding device
    read_threads: int = 0  # device decoder's file-reading threads (0: a few per core)
    max_pixels: int = DEFAULT_MAX_PIXELS
    whitening: str | None = None  # "auto" or "off"; None keeps the data directory's choice
    progress: bool = True
    vector_store: str | None = None  # faiss, milvus:PATH.db, milvus://HOST:PORT/COLLECTION; None: as before
    engine: str = "builtin"
    ray_address: str | None = None  # None: the cluster this process joined, else a new local one


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    failed: int = 0
    removed: int = 0
    missing: int = 0
    repaired: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    vectors: int = 0
    index_type: str = ""
    whitening: str | None = None  # digest of the collection's whitening, None when vectors are raw
    model: str = ""
    failing: int = 0  # files of the collection that cannot be read now, this run's and earlier ones
    failures: list[dict[str, str]] = field(default_factory=list)  # the first FAILURES_LISTED: path, error

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.indexed} indexed", f"{self.unchanged} unchanged", f"{self.duplicates} duplicate",
                 f"{self.failed} failed", f"{self.removed} removed"]
        if self.missing:
            parts.append(f"{self.missing} missing (use --prune to drop them)")
        rate = f" ({self.images_per_second:.1f} images/s)" if self.indexed else ""
        return "\n".join([", ".join(parts) + f" in {self.seconds:.1f} s{rate}", *self._failure_lines()])

    def _failure_lines(self) -> list[str]:
        if not self.failing:
            return []
        files = "file cannot" if self.failing == 1 else "files cannot"
        lines = [f"{self.failing} {files} be read (fix or remove them, then rerun):"]
        lines += [f"  {failure['path']}: {failure['error']}" for failure in self.failures]
        if self.failing > len(self.failures):
            lines.append(f"  ... and {self.failing - len(self.failures)} more: `whysim stats --failed` lists them all")
        return lines


def _describe_mismatch(active: ModelCard, requested: ModelCard) -> str:
    a, r = active.identity(), requested.identity()
    diffs = ", ".join(f"{key} {a[key]!r} -> {r[key]!r}" for key in a if a[key] != r[key])
    return (f"this data directory's index was built with {active.short_name()}, "
            f"not {requested.short_name()} ({diffs}). Re-embed everything with the new model "
            f"by adding --rebuild, or drop the model options to keep using the existing one.")


@dataclass(frozen=True)
class OpenedModel:
    card: ModelCard
    load: Callable[[], SiameseBranch]
    """Builds the branch; deferred so that a run with nothing to embed never loads weights."""
    fresh: bool
    """The store must start empty (new model or --rebuild)."""


def _open_model(catalog: Catalog, datadir: DataDir, requested: SiameseBranch | None,
                rebuild: bool) -> OpenedModel:
    active = catalog.active_model()
    if requested is None:
        if active is None:
            raise ValueError("no model: pass one, or index into a directory that has one")
        if rebuild:
            catalog.reset_all_to_pending()
        return OpenedModel(active, lambda: load_for_card(active, datadir.models_dir), rebuild)
    if active is not None and active.identity() != requested.card.identity() and not rebuild:
        raise ModelMismatch(_describe_mismatch(active, requested.card))
    fresh = rebuild or active is None or active.identity() != requested.card.identity()
    if fresh:
        # Rows go back to pending before the new model becomes active: a crash in between
        # must never leave the old model's vectors trusted under the new model's card.
        catalog.reset_all_to_pending()
        if requested.card.weights not in ("imagenet", "none"):
            store_checkpoint_copy(requested, datadir.models_dir)
        catalog.set_active_model(requested.card)
    return OpenedModel(requested.card, lambda: requested, fresh)


def _open_store(location: VectorLocation, dim: int, fresh: bool) -> VectorStore:
    """The saved store, or an empty one; `reconcile` then re-queues whatever has no vector."""
    location.clean_up()
    if not fresh and location.exists():
        try:
            store = location.load()
        except (RuntimeError, ValueError) as exc:
            # Saves are atomic, so only something outside whysim breaks the file; the images
            # are the source of truth, so embed them again rather than refuse to work.
            logger.warning("%s is unreadable (%s); every image will be embedded again",
                           location.description, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return location.empty(dim)
        if store.dim == dim:
            return store
    return location.empty(dim)


class IndexRun:
    def __init__(self, root: Path, datadir: DataDir, options: IndexOptions,
                 requested_model: SiameseBranch | None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        if not root.is_dir():
            raise FileNotFoundError(f"not a directory: {root}")
        if options.index_type not in ("auto", *INDEX_KINDS):
            raise ValueError(f"unknown index type {options.index_type!r}")
        if options.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {options.decoder!r}; choose one of {', '.join(DECODERS)}")
        if options.engine not in ENGINES:
            raise ValueError(f"unknown engine {options.engine!r}; choose one of {', '.join(ENGINES)}")
        self.root = root.resolve()
        self.datadir = datadir.ensure()
        self.options = options
        self.requested_model = requested_model
        self.on_progress = on_progress
        self.report = IndexReport()

    def run(self) -> IndexReport:
        with self.datadir.writer_lock():
            return self.run_locked()

    def run_locked(self) -> IndexReport:
        """`run` for a caller that already holds the data directory's writer lock."""
        started = time.perf_counter()
        catalog = Catalog(open_catalog_engine(self.datadir.catalog_url))
        try:
            switched = switches_store(catalog, self.options.vector_store)
            location = open_location(self.datadir, catalog, self.options.vector_store)
            try:
                self._run(catalog, location, started, switched)
            finally:
                location.close()
        finally:
            catalog.engine.dispose()
        return self.report

    def _run(self, catalog: Catalog, location: VectorLocation, started: float, switched: bool) -> None:
        options, report = self.options, self.report
        if options.index_type not in ("auto", *location.kinds):
            raise ValueError(f"index type {options.index_type!r} is not available with the vector store "
                             f"{location.description}; choose {', '.join(('auto', *location.kinds))}")
        scanned = list(scan_collection(self.root))
        if not scanned and not self._known_collection(catalog):
            raise NoImagesFound(f"no images under {self.root} (whysim reads "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))} files, in subfolders too)")
        model = _open_model(catalog, self.datadir, self.requested_model, options.rebuild)
        if options.engine == "builtin":
            # refuse a missing CUDA device or runtime before touching anything
            resolve_runtime(options.runtime, resolve_device(options.device))
        whitening_choice = remember_choice(catalog, options.whitening)
        fresh = model.fresh or switched  # a store switched to starts empty and is filled again
        store = _open_store(location, model.card.dim, fresh)
        repaired = reconcile(catalog, store)
        report.repaired = repaired.repairs
        if repaired.changed or fresh:
            location.save(store)

        collection_id = catalog.collection_id(self.root)
        assert collection_id is not None
        plan = plan_collection(scanned, catalog.stored_files(collection_id))
        report.unchanged = plan.unchanged
        if plan.missing_ids and options.prune:
            report.removed = catalog.delete_images(plan.missing_ids)  # rows first: see reconcile
            store.remove(plan.missing_ids)
            location.save(store)
        else:
            report.missing = len(plan.missing_ids)
        if plan.new_files:
            catalog.add_pending(collection_id, [(f.path, f.size, f.mtime_ns, f.label) for f in plan.new_files])

        writer = BackgroundChunkWriter(catalog, store, location, options.chunk_size, options.flush_seconds)
        run_pass: Callable[[list[WorkItem], ChunkWriter, Catalog], None] | None = None
        attempted: set[int] = set()
        changed = {item.image_id: item for item in plan.changed}
        embed_started = time.perf_counter()
        try:
            for _ in range(MAX_PASSES):
                work = self._work_items(catalog, collection_id, changed, attempted)
                if not work:
                    break
                if run_pass is None:
                    run_pass = self._pass_runner(model.load())
                    embed_started = time.perf_counter()
                attempted.update(item.image_id for item in work)
                changed = {}
                run_pass(work, writer, catalog)
        except KeyboardInterrupt:
            writer.flush()
            self._finish(writer, store, catalog, started, embed_started, model.card)
            raise IndexingInterrupted(report) from None
        finally:
            writer.close()
        writer.flush()
        store = self._settle_store(catalog, location, writer.store, whitening_choice)
        self._finish(writer, store, catalog, started, embed_started, model.card)

    def _work_items(self, catalog: Catalog, collection_id: int, changed: dict[int, WorkItem],
                    attempted: set[int]) -> list[WorkItem]:
        work = dict(changed)
        for path, stored in catalog.stored_files(collection_id).items():
            if stored.status == ImageStatus.PENDING.value and stored.id not in attempted and stored.id not in work:
                absolute = self.root / path
                try:
                    stat = absolute.stat()
                    size, mtime = stat.st_size, stat.st_mtime_ns
                except OSError:
                    size, mtime = stored.size_bytes, stored.mtime_ns
                work[stored.id] = WorkItem(stored.id, path, size, mtime, stored.sha256, stored.status)
        return sorted(work.values(), key=lambda item: item.path)

    def _loader(self, work: list[WorkItem], input_size: int, batch_size: int,
                device_type: str) -> Iterable[ReadBatch]:
        requests = [ReadRequest(item.image_id, self.root / item.path) for item in work]
        workers = min(indexing_workers(self.options.workers, device_type), max(0, len(work) // batch_size))
        if workers == 0:
            return ThreadedBatchReader(requests, input_size, batch_size, self.options.max_pixels)
        dataset = ImageFileDataset(requests, input_size, self.options.max_pixels)
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_reads,
                          worker_init_fn=init_reader_worker, prefetch_factor=4, persistent_workers=False,
                          pin_memory=torch.cuda.is_available() and self.options.device != "cpu")

    def _batches(self, work: list[WorkItem], embedder: Embedder, batch_size: int) -> Iterable[ReadBatch]:
        decoder = self.options.decoder
        if decoder == "auto":
            decoder = "device" if embedder.device.type == "cuda" else "pil"
        if decoder == "pil":
            return self._loader(work, embedder.branch.input_size, batch_size, embedder.device.type)
        # Imported here: torchvision's decoders cost ~1.4 s of start-up that CPU runs never need.
        from whysim.indexer.pipeline.device_reading import DeviceBatchReader

        requests = [ReadRequest(item.image_id, self.root / item.path) for item in work]
        return DeviceBatchReader(requests, embedder.branch.input_size, batch_size, embedder.device,
                                 self.options.max_pixels, self.options.read_threads)

    def _pass_runner(self, branch: SiameseBranch) -> Callable[[list[WorkItem], ChunkWriter, Catalog], None]:
        """The embedding pass of the chosen engine, with its model ready."""
        if self.options.engine == "ray":
            return lambda work, writer, catalog: self._ray_pass(work, branch, writer, catalog)
        embedder = Embedder(branch, resolve_device(self.options.device), self.options.runtime,
                            self.datadir.runtime_cache_dir)
        return lambda work, writer, catalog: self._embed_pass(work, embedder, writer, catalog)

    @contextmanager
    def _progress(self, total: int) -> Iterator[Callable[[int], None]]:
        bar = tqdm(total=total, unit="img", desc="embedding", disable=not self.options.progress,
                   dynamic_ncols=True, smoothing=0.1)

        def advance(done: int) -> None:
            bar.update(done)
            if self.on_progress:
                self.on_progress(done)

        try:
            yield advance
        finally:
            bar.close()

    def _batch_size_for(self, device_type: str) -> int:
        return self.options.batch_size or (CUDA_BATCH_SIZE if device_type == "cuda" else CPU_BATCH_SIZE)

    def _embed_pass(self, work: list[WorkItem], embedder: Embedder, writer: ChunkWriter, catalog: Catalog) -> None:
        by_id = {item.image_id: item for item in work}
        batch_size = self._batch_size_for(embedder.device.type)
        with self._progress(len(work)) as advance:
            for batch in self._batches(work, embedder, batch_size):
                self._handle_batch(batch, by_id, embedder, writer, catalog)
                writer.maybe_flush()
                advance(len(batch.results))

    def _ray_pass(self, work: list[WorkItem], branch: SiameseBranch, writer: ChunkWriter, catalog: Catalog) -> None:
        from whysim.indexer.pipeline.ray_engine import run_ray_pass  # imports Ray: only for --engine ray

        by_id = {item.image_id: item for item in work}
        requests = [ReadRequest(item.image_id, self.root / item.path) for item in work]
        with self._progress(len(work)) as advance:
            def handle(results: list[ReadResult], vectors: np.ndarray) -> None:
                record_outcomes(results, lambda rows: vectors[rows], by_id, writer, catalog)
                writer.maybe_flush()
                advance(len(results))

            run_ray_pass(requests, branch, self.options.ray_address, branch.input_size, self.options.max_pixels,
                         self._batch_size_for, self.options.device, self.options.chunk_size, handle)

    def _handle_batch(self, batch: ReadBatch, by_id: dict[int, WorkItem], embedder: Embedder,
                      writer: ChunkWriter, catalog: Catalog) -> None:
        def embed(rows: list[int]) -> np.ndarray:
            assert batch.pixels is not None  # rows are error-free results, whose pixels are stacked
            return embedder(batch.pixels if len(rows) == len(batch.pixels) else batch.pixels[rows])

        record_outcomes(batch.results, embed, by_id, writer, catalog)

    def _settle_store(self, catalog: Catalog, location: VectorLocation, store: VectorStore,
                      whitening_choice: str) -> VectorStore:
        """Fits or refits the collection's whitening when the policy says so, then converts the
        index to the wanted type; saves once if either changed the store."""
        settle_collection_kind(catalog, store)
        settled = settle_whitening(catalog, store, whitening_choice)
        if self.options.index_type != "auto":
            catalog.set_setting(INDEX_TYPE_SETTING, self.options.index_type)
        wanted = catalog.get_setting(INDEX_TYPE_SETTING) or choose_index_kind(len(settled))
        settled = settled.converted(wanted)
        if settled is not store:
            location.save(settled)
        return settled

    def _finish(self, writer: ChunkWriter, store: VectorStore, catalog: Catalog, started: float,
                embed_started: float, card: ModelCard) -> None:
        report = self.report
        report.indexed = writer.counts.indexed
        report.unchanged += writer.counts.unchanged
        report.duplicates = writer.counts.duplicates
        report.failed = writer.counts.failed
        report.seconds = round(time.perf_counter() - started, 3)
        embed_seconds = time.perf_counter() - embed_started
        report.images_per_second = round(report.indexed / embed_seconds, 2) if report.indexed else 0.0
        report.vectors = len(store)
        report.index_type = store.kind
        report.whitening = store.whitening.digest() if store.whitening is not None else None
        report.model = card.short_name()
        collection_id = catalog.collection_id(self.root, create=False)
        failures = catalog.failures(collection_id) if collection_id is not None else []
        report.failing = len(failures)
        report.failures = [{"path": str(failure.absolute_path), "error": failure.error or "unreadable"}
                           for failure in failures[:FAILURES_LISTED]]

    def _known_collection(self, catalog: Catalog) -> bool:
        """Files were indexed from this folder before (an emptied folder then is a change, not a mistake)."""
        collection_id = catalog.collection_id(self.root, create=False)
        return collection_id is not None and bool(catalog.stored_files(collection_id))
