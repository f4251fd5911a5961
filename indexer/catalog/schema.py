"""ORM models of the catalog. Catalog image ids are also the ids of the vectors in FAISS."""
from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ImageStatus(str, enum.Enum):
    PENDING = "pending"  # found, not yet embedded (or interrupted mid-way)
    INDEXED = "indexed"  # has a vector in the store under the same id
    DUPLICATE = "duplicate"  # same bytes as `duplicate_of`; shares its vector
    FAILED = "failed"  # could not be decoded; `error` says why


class Collection(Base):
    """A folder that was indexed; image paths are relative to its root."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(primary_key=True)
    root: Mapped[str] = mapped_column(String(4096), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImageRecord(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("collection_id", "path", name="uq_images_collection_path"),
        # AUTOINCREMENT: ids are never reused, so a stale vector can never be mistaken
        # for a newer image that happens to get the same id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(4096))
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(512), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=ImageStatus.PENDING.value)
    error: Mapped[str | None] = mapped_column(Text)
    duplicate_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("images.id", ondelete="SET NULL"), index=True)
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IndexModel(Base):
    """The model an index was built with. Exactly one row is active at a time."""

    __tablename__ = "index_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    backbone: Mapped[str] = mapped_column(String(64))
    weights_digest: Mapped[str] = mapped_column(String(64))
    input_size: Mapped[int] = mapped_column(Integer)
    pooling: Mapped[str] = mapped_column(String(16))
    dimension: Mapped[int] = mapped_column(Integer)
    card_json: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Setting(Base):
    """Small key/value preferences that must survive between runs (e.g. a forced index type)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
