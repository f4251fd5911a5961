"""Read stage for `--decoder device`: threads read and hash files, JPEGs decode in batches on
the embedding device (nvJPEG on CUDA), and resize there too.

Three things overlap: a thread pool reads the next batches' files, a decode thread turns
one batch into pixels (on its own CUDA stream), and the caller embeds the batch before. A
file the device decoder cannot take (PNG, CMYK, truncated, anything `probe_jpeg` or the
decoder refuses) goes through the PIL path of `reading` in the same run, so results and
failure reasons are those of the CPU reader. Batches come out as the same ReadBatch.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from whysim.indexer.imaging import DEFAULT_MAX_PIXELS
from whysim.indexer.jpeg_probe import JpegHeader, probe_jpeg
from whysim.indexer.pipeline.device_decoding import apply_orientation, decode_jpegs, resize_images
from whysim.indexer.pipeline.reading import ReadBatch, ReadRequest, ReadResult, decode_file_bytes, unreadable_file

# Pixels decoded per nvJPEG call and per resize canvas: bounds device memory whatever the
# photo sizes (256 MP of RGB is 768 MB as uint8; the float canvas is 4x that).
DECODE_PIXEL_BUDGET = 256_000_000
CANVAS_PIXEL_BUDGET = 64_000_000
PREFETCH_BATCHES = 3
_END = object()


def default_read_threads() -> int:
    """Reading is I/O and hashing (both release the GIL): a few threads per core."""
    return max(4, min(32, 2 * (os.cpu_count() or 2)))


@dataclass
class LoadedFile:
    """One file after the thread stage: its result so far, and its bytes if the device decodes it."""

    result: ReadResult
    data: bytes | None = None
    header: JpegHeader | None = None


def load_file(request: ReadRequest, input_size: int, max_pixels: int) -> LoadedFile:
    """Reads and hashes; decodes with PIL right away unless the device decoder can take it."""
    try:
        data = request.path.read_bytes()
    except OSError as exc:
        return LoadedFile(unreadable_file(request, exc))
    sha = hashlib.sha256(data).hexdigest()
    header = probe_jpeg(data)
    if header is None or header.pixels > max_pixels:
        return LoadedFile(decode_file_bytes(request.image_id, data, sha, input_size, max_pixels))
    width, height = header.displayed_size
    return LoadedFile(ReadResult(request.image_id, sha, width, height, None, None), data, header)


class DeviceBatchReader:
    """Iterable of ReadBatch whose pixels are already on `device`, in request order."""

    def __init__(self, requests: Sequence[ReadRequest], input_size: int, batch_size: int,
                 device: torch.device, max_pixels: int = DEFAULT_MAX_PIXELS, threads: int = 0,
                 canvas_pixels: int = CANVAS_PIXEL_BUDGET) -> None:
        self.requests = list(requests)
        self.input_size = input_size
        self.batch_size = max(1, batch_size)
        self.device = device
        self.max_pixels = max_pixels
        self.threads = threads or default_read_threads()
        self.canvas_pixels = canvas_pixels

    def __len__(self) -> int:
        return -(-len(self.requests) // self.batch_size)

    def __iter__(self) -> Iterator[ReadBatch]:
        out: queue.Queue[object] = queue.Queue(maxsize=2)
        stop = threading.Event()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="whysim-read")
        worker = threading.Thread(target=self._produce, args=(pool, out, stop), name="whysim-decode", daemon=True)
        worker.start()
        try:
            while (item := out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                batch, ready = item  # type: ignore[misc]
                if ready is not None:  # made on the decode thread's stream
                    stream = torch.cuda.current_stream(self.device)
                    stream.wait_event(ready)
                    if batch.pixels is not None:
                        batch.pixels.record_stream(stream)
                yield batch
        finally:  # also when the consumer stops early (Ctrl-C, an error): read no further
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(queue.Empty):
                while True:
                    out.get_nowait()
            worker.join()
            pool.shutdown(wait=True)

    # ------------------------------------------------------------ decode thread

    def _produce(self, pool: ThreadPoolExecutor, out: queue.Queue[object], stop: threading.Event) -> None:
        def put(item: object) -> None:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    out.put(item, timeout=0.1)
                    return

        try:
            cuda = self.device.type == "cuda"
            stream = torch.cuda.Stream(self.device) if cuda else None
            starts = iter(range(0, len(self.requests), self.batch_size))
            window: deque[list[Future[LoadedFile]]] = deque()
            while not stop.is_set():
                while len(window) < PREFETCH_BATCHES and (start := next(starts, None)) is not None:
                    window.append([pool.submit(load_file, request, self.input_size, self.max_pixels)
                                   for request in self.requests[start:start + self.batch_size]])
                if not window:
                    break
                loaded = [future.result() for future in window.popleft()]
                with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                    batch = self.assemble(loaded)
                    ready = torch.cuda.Event() if cuda else None
                    if ready is not None:
                        ready.record(stream)
                put((batch, ready))
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            put(exc)

    def assemble(self, loaded: list[LoadedFile]) -> ReadBatch:
        """One batch: device-decodes what it can, falls back to PIL for the rest, stacks pixels."""
        candidates = [file for file in loaded if file.data is not None]
        on_device: list[tuple[LoadedFile, torch.Tensor]] = []
        for file, image in zip(candidates, self._decode(candidates)):
            if image is None:  # refused by the device decoder: the PIL path has the final word
                file.result = decode_file_bytes(file.result.image_id, file.data or b"", file.result.sha256 or "",
                                                self.input_size, self.max_pixels)
            else:
                on_device.append((file, apply_orientation(image, file.header.orientation if file.header else 1)))
            file.data = None
        ok = [file for file in loaded if file.result.error is None]
        if not ok:
            return ReadBatch([file.result for file in loaded], None)
        pixels = torch.empty((len(ok), 3, self.input_size, self.input_size), dtype=torch.uint8, device=self.device)
        row_of = {id(file): row for row, file in enumerate(ok)}
        if on_device:
            rows = torch.tensor([row_of[id(file)] for file, _ in on_device], device=self.device)
            pixels[rows] = resize_images([image for _, image in on_device], self.input_size, self.canvas_pixels)
        by_pil = [file for file in ok if file.result.pixels is not None]
        if by_pil:
            rows = torch.tensor([row_of[id(file)] for file in by_pil], device=self.device)
            pixels[rows] = torch.stack([file.result.pixels for file in by_pil]).to(self.device)  # type: ignore[misc]
        for file in loaded:
            file.result.pixels = None  # travel once, in the stacked tensor
        return ReadBatch([file.result for file in loaded], pixels)

    def _decode(self, candidates: list[LoadedFile]) -> list[torch.Tensor | None]:
        """Device decode in calls of at most DECODE_PIXEL_BUDGET pixels. Progressive JPEGs go
        in calls of their own: a decoder that refuses them fails its whole call, and each
        file of a failed call is then retried alone."""
        images: list[torch.Tensor | None] = [None] * len(candidates)
        for progressive in (False, True):
            rows = [row for row, file in enumerate(candidates)
                    if file.header is not None and file.header.progressive == progressive]
            start = 0
            while start < len(rows):
                end, budget = start, 0
                while end < len(rows):
                    size = candidates[rows[end]].header.pixels  # type: ignore[union-attr]
                    if end > start and budget + size > DECODE_PIXEL_BUDGET:
                        break
                    budget += size
                    end += 1
                files = [torch.frombuffer(bytearray(candidates[row].data or b""), dtype=torch.uint8)
                         for row in rows[start:end]]
                for row, image in zip(rows[start:end], decode_jpegs(files, self.device)):
                    images[row] = image
                start = end
        return images
