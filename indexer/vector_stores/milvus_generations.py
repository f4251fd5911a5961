"""A Milvus location: generations of collections behind one alias, switched atomically.

Each generation is its own collection, COLLECTION_g<N>; readers reach the served one through
the alias COLLECTION, resolved when they load it, and then search that collection itself, so a
reader's query always meets the vectors and the whitening of one generation. Incremental runs
upsert into the served generation. A rebuild (a whitening refit, `whysim compact`, a change of
index type, a new model) fills the next generation while the old one is served, then `save`
swaps the alias and records the generation, its collection and its whitening's digest in the
catalog (`vector_generation`); readers notice that record changing, as they notice a FAISS
file's new inode. kill -9 at any point leaves the alias on a whole generation: before the swap,
the old one (the half-built one is dropped by the next writer); after it, the new one.

A generation that stops being served is dropped by a later writer once RETIRED_GRACE_S have
passed: readers check the record on every request (or every --index-check-interval), so none
is still searching it by then. Collections of generations never served (a killed rebuild, the
intermediate step of a refit and a type change) are dropped by the next writer at once.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.vector_stores.milvus import (
    LITE_SERVERS,
    MILVUS_KINDS,
    MilvusStore,
    connect,
)

GENERATION_SETTING = "vector_generation"
# A retired generation is dropped this long after the swap (readers move on at their next request).
RETIRED_GRACE_S = 60.0


@dataclass(frozen=True)
class GenerationRecord:
    """What the catalog says about the served generation; any change tells readers to reload."""

    generation: int = 0  # 0: none published yet (or a collection from before generations)
    collection: str | None = None
    whitening: str | None = None  # digest of the generation's whitening, None when its vectors are raw
    saves: int = 0  # bumped by every save, so readers also reload after incremental upserts
    retired: dict[str, float] = field(default_factory=dict)  # collection -> when it stopped being served

    @classmethod
    def parse(cls, text: str | None) -> GenerationRecord:
        if not text:
            return cls()
        value = json.loads(text)
        if isinstance(value, int):  # a save counter, as written before generations
            return cls(saves=value)
        return cls(**value)

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def generation_of(collection: str, base: str) -> int | None:
    """N for a collection named BASE_gN, else None."""
    match = re.fullmatch(re.escape(base) + r"_g(\d+)", collection)
    return int(match.group(1)) if match else None


class MilvusLocation:
    """Generations of a collection on a Milvus server (`uri` http://HOST:PORT) or in a Milvus Lite file."""

    def __init__(self, uri: str, collection: str, catalog: Catalog, lite_path: str | None = None) -> None:
        self.uri = uri
        self.collection = collection  # the alias readers use
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

    def record(self) -> GenerationRecord:
        return GenerationRecord.parse(self.catalog.get_setting(GENERATION_SETTING))

    def _write_record(self, record: GenerationRecord) -> None:
        self.catalog.set_setting(GENERATION_SETTING, record.dumps())

    def served_collection(self) -> str | None:
        """The collection the alias points at (or a collection of that name, from before generations)."""
        if not self.client.has_collection(self.collection):
            return None
        return str(self.client.describe_collection(self.collection)["collection_name"])

    def _generations(self) -> dict[str, int]:
        names = self.client.list_collections()
        return {name: n for name in names if (n := generation_of(name, self.collection)) is not None}

    def exists(self) -> bool:
        if self.lite_path is not None and not Path(self.lite_path).exists():
            return False  # without opening (and creating) the file
        return self.served_collection() is not None

    def load(self) -> MilvusStore:
        served = self.served_collection() if self.exists() else None
        if served is None:
            raise ValueError(f"no collection {self.collection!r} in {self.lite_path or self.uri}")
        return MilvusStore.open(self.client, served, self._spawn)

    def empty(self, dim: int, kind: str = "flat") -> MilvusStore:
        """An empty collection of the next generation; served once saved."""
        return self._spawn(dim, kind)

    def _spawn(self, dim: int, kind: str) -> MilvusStore:
        numbers = [self.record().generation, *self._generations().values()]
        name = f"{self.collection}_g{max(numbers) + 1}"
        return MilvusStore.create(self.client, name, dim, kind, self._spawn)

    def save(self, store: MilvusStore) -> None:  # type: ignore[override]
        """Upserts and deletes are already durable when they return (Milvus logs them first;
        Lite flushes its log to the OS on every write). A store of another generation is
        flushed (sealed into indexed segments) and loaded, then published: the alias swapped
        to it, then the record written. Milvus Lite flushes on every save: it searches unsealed rows about
        20x slower (600 ms against 33 ms per query at 2,000 1280-d rows); a server indexes
        growing segments itself, and its flush takes 2.5 s. Then readers are told: after the
        vectors, before the writer commits the rows."""
        record = self.record()
        served = self.served_collection()
        if store.collection != served or self.lite_path is not None:
            self.client.flush(store.collection)
        if store.collection != served:
            store.wait_until_searchable()
            self._publish(store.collection, served)
            retired = dict(record.retired)
            if served is not None and served != self.collection:
                retired[served] = time.time()
            generation = generation_of(store.collection, self.collection) or 0
            digest = store.whitening.digest() if store.whitening is not None else None
            record = replace(record, generation=generation, collection=store.collection, whitening=digest,
                             retired=retired)
        self._write_record(replace(record, saves=record.saves + 1))
        self._drop_unused()

    def _publish(self, collection: str, served: str | None) -> None:
        if served is None:
            self.client.create_alias(collection, self.collection)
        elif served == self.collection:
            # A collection named like the alias, from before generations: it must go before the alias
            # can take its name (readers that load in between find nothing and keep what they serve).
            self.client.drop_collection(self.collection)
            self.client.create_alias(collection, self.collection)
        else:
            self.client.alter_alias(collection, self.collection)

    def _drop_unused(self) -> None:
        """Drops collections of generations never served, and retired ones past their grace."""
        record = self.record()
        served = self.served_collection()
        now = time.time()
        keep = {served} | {name for name, when in record.retired.items() if now - when < RETIRED_GRACE_S}
        for name in self._generations():
            if name not in keep:
                self.client.drop_collection(name)
        retired = {name: when for name, when in record.retired.items() if name in keep}
        if retired != record.retired:
            self._write_record(replace(record, retired=retired))

    def stamp(self) -> tuple[str, str] | None:
        text = self.catalog.get_setting(GENERATION_SETTING)
        return None if text is None else (self.description, text)

    def clean_up(self) -> None:
        """After a kill: a half-built generation goes, and the record follows the alias (a kill
        between the swap and the record leaves the alias ahead)."""
        if self.lite_path is not None and not Path(self.lite_path).exists():
            return
        record = self.record()
        served = self.served_collection()
        if served is not None and served != record.collection and served != self.collection:
            store = MilvusStore.open(self.client, served, self._spawn)
            digest = store.whitening.digest() if store.whitening is not None else None
            retired = dict(record.retired)
            if record.collection is not None:
                retired[record.collection] = time.time()  # readers may still search it
            self._write_record(replace(record, generation=generation_of(served, self.collection) or 0,
                                       collection=served, whitening=digest, saves=record.saves + 1, retired=retired))
        self._drop_unused()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
            if self.lite_path is not None:
                LITE_SERVERS.release(self.lite_path)
