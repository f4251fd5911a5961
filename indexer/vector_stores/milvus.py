"""Vectors in a Milvus collection: milvus-lite on a local file, or a Milvus server or cluster.

Both go through pymilvus's MilvusClient (same code; only the URI differs). The primary key
is the catalog image id; writes are upserts, so an id never has two vectors, even when a
run is killed between a write and its catalog commit and the rerun writes it again.
Milvus deletes natively, so there are no tombstones to rebuild away.

Readers notice a new generation through a counter in the catalog's settings, bumped after
every save (a FAISS file has its inode and mtime; a collection has nothing comparable).
Milvus Lite lets one process at a time open its file: serving while indexing needs a
Milvus server. pymilvus is imported only when a Milvus store is used.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.errors import MilvusUnavailable
from whysim.indexer.vectors import as_ids, as_matrix, checked_entries

VECTOR_FIELD = "vector"
ID_FIELD = "id"
GENERATION_SETTING = "vector_generation"
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
    if lite_path is not None:
        Path(lite_path).parent.mkdir(parents=True, exist_ok=True)
        LITE_SERVERS.acquire(lite_path)
        # Milvus Lite has no server timestamps; the iterator warns about it on every scan.
        logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
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


class MilvusStore:
    """A VectorStore over one collection; every call goes to Milvus (nothing cached here)."""

    # Milvus holds the branch's own vectors: a collection whitening must be written atomically
    # with the vectors it made, which only the FAISS file does (whysim.indexer.pipeline.whitening_policy).
    whitening = None

    def __init__(self, client: Any, collection: str, dim: int, kind: str) -> None:
        self.client = client
        self.collection = collection
        self._dim = dim
        self.kind = kind

    @classmethod
    def open(cls, client: Any, collection: str) -> MilvusStore:
        client.load_collection(collection)  # searchable (a server keeps it loaded; a reopened Lite file does not)
        described = client.describe_collection(collection)
        vector = next(f for f in described["fields"] if f["name"] == VECTOR_FIELD)
        index = client.describe_index(collection, VECTOR_FIELD)
        kind = KIND_OF_INDEX.get(str(index.get("index_type", "FLAT")).upper(), "flat")
        return cls(client, collection, int(vector["params"]["dim"]), kind)

    @classmethod
    def create(cls, client: Any, collection: str, dim: int, kind: str) -> MilvusStore:
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
        client.create_collection(collection, schema=schema, index_params=index, consistency_level="Strong")
        return cls(client, collection, dim, kind)

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _scan(self, fields: list[str]) -> list[dict[str, Any]]:
        iterator = self.client.query_iterator(self.collection, batch_size=READ_BATCH, filter=f"{ID_FIELD} >= 0",
                                              output_fields=fields)
        rows: list[dict[str, Any]] = []
        try:
            while batch := iterator.next():
                rows.extend(batch)
        finally:
            iterator.close()
        return rows

    def ids(self) -> np.ndarray:
        return np.array(sorted(row[ID_FIELD] for row in self._scan([ID_FIELD])), dtype=np.int64)

    def vectors(self) -> np.ndarray:
        rows = sorted(self._scan([ID_FIELD, VECTOR_FIELD]), key=lambda row: row[ID_FIELD])
        if not rows:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.asarray([row[VECTOR_FIELD] for row in rows], dtype=np.float32)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        id_array, matrix = checked_entries(ids, vectors, self.dim)
        for start in range(0, len(id_array), WRITE_BATCH):
            rows = [{ID_FIELD: int(i), VECTOR_FIELD: v}
                    for i, v in zip(id_array[start:start + WRITE_BATCH], matrix[start:start + WRITE_BATCH])]
            self.client.upsert(self.collection, rows)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        id_array = as_ids(ids)
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
        rows = self.client.get(self.collection, ids=[int(image_id)], output_fields=[VECTOR_FIELD])
        return np.asarray(rows[0][VECTOR_FIELD], dtype=np.float32) if rows else None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        matrix = as_matrix(queries, self.dim)
        k = max(1, int(k))
        scores = np.full((len(matrix), k), -np.inf, dtype=np.float32)
        ids = np.full((len(matrix), k), -1, dtype=np.int64)
        if not len(matrix):
            return scores, ids
        found = self.client.search(self.collection, data=list(matrix), limit=k, output_fields=[ID_FIELD],
                                   search_params=_search_params(self.kind, k))
        for row, hits in enumerate(found):
            unique = {}  # an id held twice (see reconcile) is one hit
            for hit in hits:
                unique.setdefault(int(hit["id"]), float(hit["distance"]))
            for slot, (image_id, score) in enumerate(list(unique.items())[:k]):
                ids[row, slot] = image_id
                scores[row, slot] = score
        return scores, ids

    def converted(self, kind: str) -> MilvusStore:
        """Rebuilds the collection's index as `kind`, in place (the vectors stay where they are)."""
        if kind == self.kind:
            return self
        index_type = _milvus_index_type(kind)
        self.client.release_collection(self.collection)
        self.client.drop_index(self.collection, VECTOR_FIELD)
        index = self.client.prepare_index_params()
        index.add_index(field_name=VECTOR_FIELD, index_type=index_type, metric_type="IP", params=_index_params(kind))
        self.client.create_index(self.collection, index)
        self.client.load_collection(self.collection)
        self.kind = kind
        return self

    def compacted(self, kind: str | None = None) -> MilvusStore:
        """Asks Milvus to merge segments and purge deletions, then converts if asked."""
        self.client.compact(self.collection)
        return self.converted(kind or self.kind)


class MilvusLocation:
    """A collection on a Milvus server (`uri` http://HOST:PORT) or in a Milvus Lite file."""

    def __init__(self, uri: str, collection: str, catalog: Catalog, lite_path: str | None = None) -> None:
        self.uri = uri
        self.collection = collection
        self.catalog = catalog
        self.lite_path = lite_path
        self.description = f"{lite_path or uri} (collection {collection})"
        self.kinds = tuple(MILVUS_KINDS)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect(self.uri, self.lite_path)
        return self._client

    def exists(self) -> bool:
        if self.lite_path is not None and not Path(self.lite_path).exists():
            return False  # without opening (and creating) the file
        return bool(self.client.has_collection(self.collection))

    def load(self) -> MilvusStore:
        if not self.exists():
            raise ValueError(f"no collection {self.collection!r} in {self.lite_path or self.uri}")
        return MilvusStore.open(self.client, self.collection)

    def empty(self, dim: int, kind: str = "flat") -> MilvusStore:
        return MilvusStore.create(self.client, self.collection, dim, kind)

    def save(self, store: MilvusStore) -> None:  # type: ignore[override]
        """Upserts and deletes are already durable when they return (Milvus logs them first;
        Lite flushes its log to the OS on every write). The flush seals them into an indexed
        segment: Milvus Lite searches unsealed rows about 20x slower (600 ms against 33 ms
        per query at 2,000 1280-d rows). Then readers are told: after the vectors, before
        the writer commits the rows."""
        self.client.flush(store.collection)
        self.catalog.set_setting(GENERATION_SETTING, str(self.generation() + 1))

    def generation(self) -> int:
        return int(self.catalog.get_setting(GENERATION_SETTING) or 0)

    def stamp(self) -> tuple[str, int] | None:
        generation = self.catalog.get_setting(GENERATION_SETTING)
        return None if generation is None else (self.description, int(generation))

    def clean_up(self) -> None:
        pass  # nothing half-written: Milvus recovers its own log

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
            if self.lite_path is not None:
                LITE_SERVERS.release(self.lite_path)
