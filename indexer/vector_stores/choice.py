"""`--vector-store`: which engine holds a data directory's vectors, remembered in the catalog.

- ``faiss`` (default): vectors.faiss in the data directory.
- ``milvus:PATH.db``: an embedded Milvus Lite file (a relative PATH is taken from the current
  directory and remembered as an absolute path).
- ``milvus://HOST:PORT/COLLECTION``: a Milvus server or cluster; the same client code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.datadir import DataDir
from whysim.indexer.vector_stores.faiss_location import FaissLocation
from whysim.indexer.vector_stores.protocol import VectorLocation

VECTOR_STORE_SETTING = "vector_store"
DEFAULT_COLLECTION = "whysim"
FAISS = "faiss"


@dataclass(frozen=True)
class VectorStoreSpec:
    engine: str  # faiss or milvus
    uri: str = ""  # Milvus: http://HOST:PORT, or the Lite file's path
    collection: str = DEFAULT_COLLECTION
    lite_path: str | None = None

    def __str__(self) -> str:
        if self.engine == FAISS:
            return FAISS
        if self.lite_path is not None:
            return f"milvus:{self.lite_path}"
        return f"milvus://{urlsplit(self.uri).netloc}/{self.collection}"


def parse_vector_store(value: str) -> VectorStoreSpec:
    """Reads a --vector-store value; ValueError with the accepted forms for anything else."""
    text = value.strip()
    if text == FAISS:
        return VectorStoreSpec(FAISS)
    if text.startswith("milvus://"):
        parts = urlsplit(text)
        collection = parts.path.strip("/") or DEFAULT_COLLECTION
        if not parts.hostname or "/" in collection or not collection.replace("_", "").isalnum():
            raise ValueError(f"bad Milvus address {value!r}: expected milvus://HOST:PORT/COLLECTION "
                             f"(a collection name of letters, digits and underscores)")
        return VectorStoreSpec("milvus", f"http://{parts.hostname}:{parts.port or 19530}", collection)
    if text.startswith("milvus:"):
        path = text.removeprefix("milvus:")
        if not path.endswith(".db"):
            raise ValueError(f"bad Milvus Lite path {value!r}: expected milvus:PATH.db")
        absolute = str(Path(path).expanduser().absolute())
        return VectorStoreSpec("milvus", absolute, DEFAULT_COLLECTION, absolute)
    raise ValueError(f"unknown vector store {value!r}: use faiss, milvus:PATH.db or milvus://HOST:PORT/COLLECTION")


def chosen_vector_store(catalog: Catalog, requested: str | None = None) -> VectorStoreSpec:
    """The store named by `requested` (then remembered for later commands), else the
    remembered one, else FAISS. Only writers (holding the lock) pass `requested`."""
    if requested is not None:
        spec = parse_vector_store(requested)
        catalog.set_setting(VECTOR_STORE_SETTING, None if spec.engine == FAISS else str(spec))
        return spec
    remembered = catalog.get_setting(VECTOR_STORE_SETTING)
    return parse_vector_store(remembered) if remembered else VectorStoreSpec(FAISS)


def switches_store(catalog: Catalog, requested: str | None) -> bool:
    """Whether `requested` names another store than the remembered one: the new store must
    then start empty (one left from before the last switch may hold vectors of old content)."""
    if requested is None:
        return False
    remembered = catalog.get_setting(VECTOR_STORE_SETTING)
    before = parse_vector_store(remembered) if remembered else VectorStoreSpec(FAISS)
    return str(parse_vector_store(requested)) != str(before)


def open_location(datadir: DataDir, catalog: Catalog, requested: str | None = None) -> VectorLocation:
    spec = chosen_vector_store(catalog, requested)
    if spec.engine == FAISS:
        return FaissLocation(datadir.vectors_path)
    from whysim.indexer.vector_stores.milvus_generations import MilvusLocation

    return MilvusLocation(spec.uri, spec.collection, catalog, spec.lite_path)
