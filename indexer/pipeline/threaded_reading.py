"""Read stage for CPU indexing: threads of this process decode the next batches while the model
embeds the current one.

Worker processes (DataLoader workers) are right when the model runs on a GPU, but on CPU they
compete with the model's own threads for the same cores and pay for it twice: every batch
travels through shared memory, and the model's OpenMP team stalls whenever a worker holds one
of its cores. On 2 cores at 448 px (rooms, `tests/benchmarks/bench_index_throughput.py`) two
workers made `whysim index` cost 144 CPU ms per image against 74 for the model alone. A
thread needs neither: file reads, SHA-256, JPEG decoding and resizing all release the GIL, and
the batch is already in the process that embeds it. Results are the same ReadBatch as the
DataLoader path's, in order.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from whysim.indexer.imaging import DEFAULT_MAX_PIXELS
from whysim.indexer.pipeline.reading import ReadBatch, ReadRequest, collate_reads, read_image_file

DEFAULT_THREADS = 1
PREFETCH_BATCHES = 2


class ThreadedBatchReader:
    def __init__(self, requests: Sequence[ReadRequest], input_size: int, batch_size: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS, threads: int = DEFAULT_THREADS,
                 prefetch: int = PREFETCH_BATCHES) -> None:
        if batch_size < 1 or threads < 1 or prefetch < 1:
            raise ValueError("batch size, threads and prefetch must be at least 1")
        self.requests = list(requests)
        self.input_size = input_size
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.threads = threads
        self.prefetch = prefetch

    def __len__(self) -> int:
        return -(-len(self.requests) // self.batch_size)

    def _read(self, chunk: Sequence[ReadRequest]) -> ReadBatch:
        return collate_reads([read_image_file(request, self.input_size, self.max_pixels) for request in chunk])

    def __iter__(self) -> Iterator[ReadBatch]:
        chunks = (self.requests[start:start + self.batch_size]
                  for start in range(0, len(self.requests), self.batch_size))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="whysim-read") as pool:
            pending: deque[Future[ReadBatch]] = deque()

            def submit_next() -> None:
                chunk = next(chunks, None)
                if chunk is not None:
                    pending.append(pool.submit(self._read, chunk))

            for _ in range(self.prefetch):
                submit_next()
            try:
                while pending:
                    batch = pending.popleft().result()
                    submit_next()
                    yield batch
            finally:  # stopped early (Ctrl-C, an error downstream): drop what was not started
                for future in pending:
                    future.cancel()
