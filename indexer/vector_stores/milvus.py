"""One generation of vectors in a Milvus collection: milvus-lite on a local file, or a Milvus server.

Both go through pymilvus's MilvusClient (same code; only the URI differs). The primary key
is the catalog image id; writes are upserts, so an id never has two vectors, even when a
run is killed between a write and its catalog commit and the rerun writes it again.
Milvus deletes natively, so there are no tombstones to rebuild away.

A collection may carry the collection whitening (whysim.indexer.model.whitening): its vectors
are then whitened ones, and the transform is stored in the same collection, in a partition of
its own (the mean under id -1, projection row i under id -2 - i), so the vectors and the
transform that made them are one unit. A refit, a compaction or a change of index type never
changes a collection in place: it builds the next generation (`milvus_generations`), which
readers see only once it is whole. pymilvus is imported only when a Milvus store is used.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from whysim.indexer.errors import MilvusUnavailable
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.sampling import sample_rows
from whysim.indexer.vectors import REMAP_BLOCK, as_ids, as_matrix, checked_entries

VECTOR_FIELD = "vector"
ID_FIELD = "id"
IMAGES = f"{ID_FIELD} >= 0"  # the transform's rows have negative ids
WHITENING_PARTITION = "whitening"
IMAGE_PARTITION = "_default"
# HNSW with FAISS's M and build breadth. Search breadth measured at 100k clustered 1280-d
# vectors (tests/benchmarks/bench_milvus_search.py): recall@10 0.989 at ef 64, 0.996 at 128
# (FAISS HNSW reaches 0.996 at 256), 0.998 at 192 and 256 for little more time.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128
MILVUS_KINDS = {"flat": "FLAT", "hnsw": "HNSW"}
KIND_OF_INDEX = {"FLAT": "flat", "BRUTE_FORCE": "flat", "HNSW": "hnsw"}
WRITE_BATCH = 2000  # rows per upsert: ~10 MB of 1280-d floats, well under gRPC's message limit
READ_BATCH = 4096
# Searches are strongly consistent: a reader that loaded a new generation or save never misses a
# write saved before it (with "Eventually", or "Session" from another client, a search right
# after a reopen still returned a deleted id on the test server). The price: each search on a
# server waits for its next time tick (proxy.timeTickInterval: 200 ms by default, 20 ms on the
# test server of tests/milvus_server.py); Milvus Lite has no such wait.
SEARCH_CONSISTENCY = "Strong"


def _milvus_index_type(kind: str) -> str:
    try:
        return MILVUS_KINDS[kind]
    except KeyError:
        raise ValueError(f"index type {kind!r} is not available with Milvus; choose flat or hnsw "
                         f"(a Milvus server's own compressed indexes are configured on the server)") from None


def _index_params(kind: str) -> dict[str, Any]:
    return {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if kind == "hnsw" else {}


def _search_params(kind: str, k: int) -> dict[str, Any]:
    params = {"ef": max(HNSW_EF_SEARCH, k)} if kind == "hnsw" else {}
    return {"metric_type": "IP", "params": params}


class _LiteServers:
    """Milvus Lite runs one embedded server per file and process, and holds the file's lock
    until it stops: stop it when the last user here closes, so other processes can open it."""

    def __init__(self) -> None:
        self._users: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, path: str) -> None:
        with self._lock:
            self._users[path] += 1

    def release(self, path: str) -> None:
        with self._lock:
            self._users[path] -= 1
            last = self._users[path] <= 0
            if last:
                del self._users[path]
        if last:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(path)


LITE_SERVERS = _LiteServers()


def connect(uri: str, lite_path: str | None) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise MilvusUnavailable("Milvus vector stores need pymilvus and milvus-lite: pip install 'whysim[milvus]'") from exc
    # Milvus Lite has no server timestamps, nor has a 2.3 server for the iterator; it warns on every scan.
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    if lite_path is not None:
        Path(lite_path).parent.mkdir(parents=True, exist_ok=True)
        LITE_SERVERS.acquire(lite_path)
        # A file held by another process is reported below, with advice, instead of its traceback.
        logging.getLogger("milvus_lite.server_manager").setLevel(logging.CRITICAL)
    try:
        return MilvusClient(uri=uri)
    except Exception as exc:  # noqa: BLE001 - pymilvus raises several unrelated types here
        if lite_path is not None:
            LITE_SERVERS.release(lite_path)
        hint = (" (Milvus Lite opens a file in one process at a time: is `whysim serve` or another "
                "`whysim index` using it? Serving while indexing needs a Milvus server, milvus://HOST:PORT/COLLECTION)"
                if lite_path is not None else "")
        raise MilvusUnavailable(f"cannot open the Milvus store {lite_path or uri}: {exc}{hint}") from exc


# Makes an empty, unpublished collection of the next generation: (dim, kind) -> store.
Spawn = Callable[[int, str], "MilvusStore"]


class MilvusStore:
    """A VectorStore over one collection; every call goes to Milvus (nothing cached here but
    the whitening, which never changes in a collection)."""

    def __init__(self, client: Any, collection: str, dim: int, kind: str, spawn: Spawn,
                 whitening: Whitening | None = None, loaded: bool = True) -> None:
        self.client = client
        self.collection = collection
        self._dim = dim
        self.kind = kind
        self.whitening = whitening
        self._spawn = spawn
        self._loaded = loaded

    @classmethod
    def open(cls, client: Any, collection: str, spawn: Spawn) -> MilvusStore:
        client.load_collection(collection)  # searchable (a server keeps it loaded; a reopened Lite file does not)
        described = client.describe_collection(collection)
        vector = next(f for f in described["fields"] if f["name"] == VECTOR_FIELD)
        index = client.describe_index(collection, VECTOR_FIELD)
        kind = KIND_OF_INDEX.get(str(index.get("index_type", "FLAT")).upper(), "flat")
        dim = int(vector["params"]["dim"])
        return cls(client, collection, dim, kind, spawn, _read_whitening(client, collection, dim))

    @classmethod
    def create(cls, client: Any, collection: str, dim: int, kind: str, spawn: Spawn) -> MilvusStore:
        from pymilvus import DataType

        index_type = _milvus_index_type(kind)
        if client.has_collection(collection):
            client.drop_collection(collection)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        index = client.prepare_index_params()
        index.add_index(field_name=VECTOR_FIELD, index_type=index_type, metric_type="IP", params=_index_params(kind))
        # Strong consistency: a search right after a write sees it (a server defaults to bounded staleness).
        client.create_collection(collection, schema=schema, consistency_level="Strong")
        # Not waited for: an empty collection's index is there at once (pymilvus would poll after 0.5 s).
        client.create_index(collection, index, sync=False)
        client.create_partition(collection, WHITENING_PARTITION)
        # Loaded in the background while it is filled: loading even an empty collection takes a
        # server up to ~2 s (its load checks run once a second); the first read waits for it.
        client.load_collection(collection, _async=True)
        return cls(client, collection, dim, kind, spawn, loaded=False)

    def wait_until_searchable(self) -> None:
        """Returns once the collection is loaded (at once, but for a new one still loading)."""
        if not self._loaded:
            self.client.load_collection(self.collection)
            self._loaded = True

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        self.wait_until_searchable()
        rows = self.client.query(self.collection, filter=IMAGES, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _batches(self, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        self.wait_until_searchable()
        iterator = self.client.query_iterator(self.collection, batch_size=READ_BATCH, filter=IMAGES,
                                              output_fields=fields)
        try:
            while batch := iterator.next():
                yield batch
        finally:
            iterator.close()

    def _scan(self, fields: list[str]) -> list[dict[str, Any]]:
        return [row for batch in self._batches(fields) for row in batch]

    def ids(self) -> np.ndarray:
        return np.array(sorted(row[ID_FIELD] for row in self._scan([ID_FIELD])), dtype=np.int64)

    def vectors(self) -> np.ndarray:
        return self.entries()[1]

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) in id order, from one scan: they match even while a writer upserts."""
        rows = sorted(self._scan([ID_FIELD, VECTOR_FIELD]), key=lambda row: row[ID_FIELD])
        ids = np.array([row[ID_FIELD] for row in rows], dtype=np.int64)
        return ids, np.asarray([row[VECTOR_FIELD] for row in rows], dtype=np.float32).reshape(-1, self.dim)

    def _get(self, ids: list[int]) -> np.ndarray:
        """Vectors of `ids` (all present), in that order."""
        self.wait_until_searchable()
        found: dict[int, Any] = {}
        for start in range(0, len(ids), WRITE_BATCH):
            for row in self.client.get(self.collection, ids=ids[start:start + WRITE_BATCH],
                                       output_fields=[ID_FIELD, VECTOR_FIELD]):
                found[int(row[ID_FIELD])] = row[VECTOR_FIELD]
        return np.asarray([found[i] for i in ids], dtype=np.float32).reshape(-1, self.dim)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        id_array, matrix = checked_entries(ids, vectors, self.dim)
        self._upsert(id_array, matrix)

    def _upsert(self, ids: np.ndarray, matrix: np.ndarray, partition: str = IMAGE_PARTITION) -> None:
        for start in range(0, len(ids), WRITE_BATCH):
            rows = [{ID_FIELD: int(i), VECTOR_FIELD: v}
                    for i, v in zip(ids[start:start + WRITE_BATCH], matrix[start:start + WRITE_BATCH])]
            self.client.upsert(self.collection, rows, partition_name=partition)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        id_array = as_ids(ids)
        id_array = id_array[id_array >= 0]
        self.wait_until_searchable()
        removed = 0
        for start in range(0, len(id_array), WRITE_BATCH):
            chunk = [int(i) for i in id_array[start:start + WRITE_BATCH]]
            present = self.client.get(self.collection, ids=chunk, output_fields=[ID_FIELD])
            if present:
                self.client.delete(self.collection, ids=[row[ID_FIELD] for row in present])
                removed += len(present)
        return removed

    def reconstruct(self, image_id: int) -> np.ndarray | None:
        if int(image_id) < 0:
            return None
        self.wait_until_searchable()
        rows = self.client.get(self.collection, ids=[int(image_id)], output_fields=[VECTOR_FIELD])
        return np.asarray(rows[0][VECTOR_FIELD], dtype=np.float32) if rows else None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        matrix = as_matrix(queries, self.dim)
        k = max(1, int(k))
        scores = np.full((len(matrix), k), -np.inf, dtype=np.float32)
        ids = np.full((len(matrix), k), -1, dtype=np.int64)
        if not len(matrix):
            return scores, ids
        self.wait_until_searchable()
        found = self.client.search(self.collection, data=list(matrix), limit=k, output_fields=[ID_FIELD],
                                   search_params=_search_params(self.kind, k), partition_names=[IMAGE_PARTITION],
                                   consistency_level=SEARCH_CONSISTENCY)
        for row, hits in enumerate(found):
            unique = {}  # an id held twice (see reconcile) is one hit
            for hit in hits:
                unique.setdefault(int(hit["id"]), float(hit["distance"]))
            for slot, (image_id, score) in enumerate(list(unique.items())[:k]):
                ids[row, slot] = image_id
                scores[row, slot] = score
        return scores, ids

    # ------------------------------------------------------ next generations

    def _rebuilt(self, kind: str, whitening: Whitening | None) -> MilvusStore:
        """The same images in a new, unpublished collection of `kind`, under `whitening`: each
        vector is mapped back to the branch's and forward through the new transform, a batch
        at a time (bounded memory; nothing is embedded again)."""
        target = self._spawn(self.dim, kind)
        target._write_whitening(whitening)
        for batch in self._batches([ID_FIELD, VECTOR_FIELD]):
            for start in range(0, len(batch), REMAP_BLOCK):
                rows = batch[start:start + REMAP_BLOCK]
                ids = np.fromiter((row[ID_FIELD] for row in rows), dtype=np.int64, count=len(rows))
                vectors = np.asarray([row[VECTOR_FIELD] for row in rows], dtype=np.float32)
                if whitening is not self.whitening:
                    raw = self.whitening.invert(vectors) if self.whitening is not None else vectors
                    vectors = whitening.apply(raw) if whitening is not None else raw
                target._upsert(ids, vectors)
        return target

    def converted(self, kind: str) -> MilvusStore:
        """The same vectors in a new collection with a `kind` index (this one when it has it)."""
        if kind == self.kind:
            return self
        _milvus_index_type(kind)  # refuse an unknown kind before building anything
        return self._rebuilt(kind, self.whitening)

    def compacted(self, kind: str | None = None) -> MilvusStore:
        """A freshly built collection of the same vectors: no deleted rows, one index over all."""
        return self._rebuilt(kind or self.kind, self.whitening)

    def rewhitened(self, whitening: Whitening | None) -> MilvusStore:
        """The same images under another whitening (None: the branch's own vectors), in a new collection."""
        return self._rebuilt(self.kind, whitening)

    def branch_vectors(self, limit: int | None = None, seed: int = 0) -> np.ndarray:
        """Stored vectors mapped back to the branch's own (unwhitened): all of them, in the order
        of `ids()`, or a seeded sample of at most `limit`."""
        ids = self.ids()
        if limit is not None and len(ids) > limit:
            vectors = self._get([int(i) for i in ids[sample_rows(len(ids), limit, seed)]])
        else:
            vectors = self.vectors()
        return self.whitening.invert(vectors) if self.whitening is not None and len(vectors) else vectors

    def _write_whitening(self, whitening: Whitening | None) -> None:
        self.whitening = whitening
        if whitening is not None:
            rows = np.vstack([whitening.mean[None, :], whitening.projection]).astype(np.float32)
            self._upsert(-1 - np.arange(len(rows), dtype=np.int64), rows, WHITENING_PARTITION)


def _read_whitening(client: Any, collection: str, dim: int) -> Whitening | None:
    rows = client.query(collection, filter=f"{ID_FIELD} < 0", output_fields=[ID_FIELD, VECTOR_FIELD],
                        limit=dim + 1)
    if not rows:
        return None
    if len(rows) != dim + 1:
        raise ValueError(f"the Milvus collection {collection} holds {len(rows)} of the {dim + 1} rows of its whitening")
    matrix = np.asarray([row[VECTOR_FIELD] for row in sorted(rows, key=lambda row: -row[ID_FIELD])], dtype=np.float32)
    return Whitening(np.ascontiguousarray(matrix[0]), np.ascontiguousarray(matrix[1:]))
