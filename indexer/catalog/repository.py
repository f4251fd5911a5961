"""Catalog operations used by the indexer, the search engine and the web layer."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session, aliased

from whysim.indexer.catalog.schema import Collection, ImageRecord, ImageStatus, IndexModel, Setting, utcnow
from whysim.indexer.model.card import ModelCard


@dataclass(frozen=True)
class ImageInfo:
    """A catalog row as plain data, detached from any session."""

    id: int
    collection_root: str
    path: str
    sha256: str | None
    size_bytes: int
    mtime_ns: int
    width: int | None
    height: int | None
    label: str | None
    status: str
    error: str | None
    duplicate_of_id: int | None

    @property
    def absolute_path(self) -> Path:
        return Path(self.collection_root) / self.path


@dataclass(frozen=True)
class StoredFile:
    """What the indexer needs to decide whether a file changed since it was catalogued."""

    id: int
    size_bytes: int
    mtime_ns: int
    sha256: str | None
    status: str


def _info(row: ImageRecord, root: str) -> ImageInfo:
    return ImageInfo(row.id, root, row.path, row.sha256, row.size_bytes, row.mtime_ns, row.width,
                     row.height, row.label, row.status, row.error, row.duplicate_of_id)


# Image ids are INTEGER columns: 64-bit in SQLite, 32-bit (serial) in PostgreSQL.
MAX_ID_BY_DIALECT = {"postgresql": 2**31 - 1}
MAX_ID = 2**63 - 1


class Catalog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.max_id = MAX_ID_BY_DIALECT.get(engine.dialect.name, MAX_ID)

    def _valid_ids(self, ids: Iterable[int]) -> list[int]:
        """Ids the id column can hold: others name no image (and PostgreSQL refuses to compare them)."""
        return [i for i in ids if 0 < i <= self.max_id]

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ------------------------------------------------------------------ model

    def active_model(self) -> ModelCard | None:
        with self.session() as session:
            row = session.scalars(select(IndexModel).where(IndexModel.active.is_(True))
                                  .order_by(IndexModel.id.desc())).first()
            return ModelCard.from_json(row.card_json) if row else None

    def set_active_model(self, card: ModelCard) -> None:
        with self.session() as session, session.begin():
            session.execute(update(IndexModel).values(active=False))
            session.add(IndexModel(backbone=card.backbone, weights_digest=card.weights_digest,
                                   input_size=card.input_size, pooling=card.pooling,
                                   dimension=card.dim, card_json=card.to_json(), active=True))

    # --------------------------------------------------------------- settings

    def get_setting(self, key: str) -> str | None:
        with self.session() as session:
            return session.scalar(select(Setting.value).where(Setting.key == key))

    def set_setting(self, key: str, value: str | None) -> None:
        with self.session() as session, session.begin():
            session.execute(delete(Setting).where(Setting.key == key))
            if value is not None:
                session.add(Setting(key=key, value=value))

    # ------------------------------------------------------------ collections

    def collection_id(self, root: Path, create: bool = True) -> int | None:
        key = str(root)
        with self.session() as session, session.begin():
            found = session.scalar(select(Collection.id).where(Collection.root == key))
            if found is not None or not create:
                return found
            collection = Collection(root=key)
            session.add(collection)
            session.flush()
            return collection.id

    def collection_roots(self) -> dict[int, str]:
        with self.session() as session:
            return {cid: root for cid, root in session.execute(select(Collection.id, Collection.root))}

    # ------------------------------------------------------- indexer bookkeeping

    def stored_files(self, collection_id: int) -> dict[str, StoredFile]:
        query = select(ImageRecord.path, ImageRecord.id, ImageRecord.size_bytes, ImageRecord.mtime_ns,
                       ImageRecord.sha256, ImageRecord.status).where(ImageRecord.collection_id == collection_id)
        with self.session() as session:
            return {path: StoredFile(i, size, mtime, sha, status)
                    for path, i, size, mtime, sha, status in session.execute(query)}

    def add_pending(self, collection_id: int, files: Sequence[tuple[str, int, int, str | None]]) -> dict[str, int]:
        """Inserts (path, size, mtime_ns, label) rows as pending; returns their new ids by path."""
        rows = [ImageRecord(collection_id=collection_id, path=path, size_bytes=size, mtime_ns=mtime,
                            label=label, status=ImageStatus.PENDING.value) for path, size, mtime, label in files]
        with self.session() as session, session.begin():
            session.add_all(rows)
            session.flush()
            return {row.path: row.id for row in rows}

    def ids_with_status(self, status: ImageStatus) -> set[int]:
        with self.session() as session:
            return set(session.scalars(select(ImageRecord.id).where(ImageRecord.status == status.value)))

    def set_status(self, ids: Iterable[int], status: ImageStatus) -> None:
        ids = list(ids)
        with self.session() as session, session.begin():
            for start in range(0, len(ids), 500):
                session.execute(update(ImageRecord).where(ImageRecord.id.in_(ids[start:start + 500]))
                                .values(status=status.value))

    def canonical_by_sha(self, shas: Iterable[str]) -> dict[str, int]:
        """For each digest, the id of an indexed image with those bytes (if any)."""
        shas = list(set(shas))
        if not shas:
            return {}
        query = (select(ImageRecord.sha256, func.min(ImageRecord.id))
                 .where(ImageRecord.sha256.in_(shas), ImageRecord.status == ImageStatus.INDEXED.value)
                 .group_by(ImageRecord.sha256))
        with self.session() as session:
            return {sha: image_id for sha, image_id in session.execute(query)}

    def stale_duplicates(self, canonical_ids: Iterable[int]) -> set[int]:
        """Rows recorded as copies of these images whose bytes no longer match them."""
        ids = list(canonical_ids)
        if not ids:
            return set()
        canonical = aliased(ImageRecord)
        query = (select(ImageRecord.id).join(canonical, ImageRecord.duplicate_of_id == canonical.id)
                 .where(canonical.id.in_(ids),
                        (ImageRecord.sha256 != canonical.sha256)
                        | (canonical.status != ImageStatus.INDEXED.value)))
        with self.session() as session:
            return set(session.scalars(query))

    def record_results(self, results: Sequence[dict[str, object]]) -> None:
        """Writes embedding outcomes (dicts of ImageRecord columns keyed by `id`) in one transaction.

        Rows with the same columns go out as one executemany (ORM bulk UPDATE by primary
        key), a tenth of the cost of one statement per row. Each id appears once.
        """
        if not results:
            return
        now = utcnow()
        by_columns: dict[tuple[str, ...], list[dict[str, object]]] = {}
        for values in results:
            row = dict(values)
            if row.get("status") == ImageStatus.INDEXED.value:
                row.setdefault("indexed_at", now)
            by_columns.setdefault(tuple(sorted(row)), []).append(row)
        with self.session() as session, session.begin():
            for rows in by_columns.values():
                session.execute(update(ImageRecord), rows)

    def delete_images(self, ids: Iterable[int]) -> int:
        ids = list(ids)
        removed = 0
        with self.session() as session, session.begin():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                session.execute(update(ImageRecord).where(ImageRecord.duplicate_of_id.in_(chunk))
                                .values(duplicate_of_id=None, status=ImageStatus.PENDING.value))
                result = session.execute(delete(ImageRecord).where(ImageRecord.id.in_(chunk)))
                removed += result.rowcount or 0
        return removed

    def reset_all_to_pending(self) -> None:
        with self.session() as session, session.begin():
            session.execute(update(ImageRecord).values(status=ImageStatus.PENDING.value, duplicate_of_id=None,
                                                       sha256=None, error=None, indexed_at=None))

    # ----------------------------------------------------------------- readers

    def get_image(self, image_id: int) -> ImageInfo | None:
        if not self._valid_ids([image_id]):
            return None
        with self.session() as session:
            found = session.execute(select(ImageRecord, Collection.root).join(Collection)
                                    .where(ImageRecord.id == image_id)).first()
            return _info(found[0], found[1]) if found else None

    def get_images(self, ids: Sequence[int]) -> dict[int, ImageInfo]:
        ids = self._valid_ids(ids)
        if not ids:
            return {}
        with self.session() as session:
            rows = session.execute(select(ImageRecord, Collection.root).join(Collection)
                                   .where(ImageRecord.id.in_(list(ids))))
            return {row.id: _info(row, root) for row, root in rows}

    def list_images(self, status: ImageStatus | None = ImageStatus.INDEXED, offset: int = 0,
                    limit: int = 50) -> list[ImageInfo]:
        query = select(ImageRecord, Collection.root).join(Collection).order_by(ImageRecord.id)
        if status is not None:
            query = query.where(ImageRecord.status == status.value)
        with self.session() as session:
            return [_info(row, root) for row, root in session.execute(query.offset(offset).limit(limit))]

    def status_counts(self) -> dict[str, int]:
        with self.session() as session:
            counts = {status: count for status, count in
                      session.execute(select(ImageRecord.status, func.count()).group_by(ImageRecord.status))}
        return {status.value: int(counts.get(status.value, 0)) for status in ImageStatus}

    def failures(self, collection_id: int | None = None, limit: int | None = None) -> list[ImageInfo]:
        """Files that could not be read (`error` says why), by collection and path; of one collection or all."""
        query = (select(ImageRecord, Collection.root).join(Collection)
                 .where(ImageRecord.status == ImageStatus.FAILED.value).order_by(Collection.root, ImageRecord.path))
        if collection_id is not None:
            query = query.where(ImageRecord.collection_id == collection_id)
        with self.session() as session:
            return [_info(row, root) for row, root in session.execute(query.limit(limit))]
