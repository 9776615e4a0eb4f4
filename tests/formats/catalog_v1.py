"""The catalog module as released in format 1 (frozen copy, for migration tests only).

Original docstring: the SQLite catalog: files, segments with their vectors, and FTS5 for BM25.

It is the source of truth; every change to a file is one transaction, so a kill at any
moment leaves either the old or the new state of that file, never a mix.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)

from searchengine.types import Filters, Segment

metadata = MetaData()

files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("path_key", LargeBinary, nullable=False, unique=True),  # os.fsencode(path): identity
    Column("path", Text, nullable=False),  # for display; undecodable bytes replaced
    Column("type", String(16), nullable=False, index=True),
    Column("size", Integer, nullable=False),
    Column("mtime_ns", Integer, nullable=False),
    Column("sha", String(64), index=True),
    Column("state", String(16), nullable=False, index=True),
    Column("reason", Text),
    Column("meta", Text),  # JSON: dates, camera, duration...
    Column("indexed_at", Float),
    Column("date", Float, index=True),  # EXIF date when known, else mtime: for --after/--before
    Column("duration", Float),  # seconds, audio and video
    sqlite_autoincrement=True,
)

segments = Table(
    "segments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "file_id", Integer, ForeignKey("files.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("space", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("start", Float),
    Column("end", Float),
    Column("text", Text),
    Column("model", Text),  # model key the vector was made with
    Column("vector", LargeBinary),  # float32, L2-normalised; NULL while pending
    sqlite_autoincrement=True,  # ids are never reused, so a stale FAISS id can't alias
)

SCHEMA_EXTRA = [
    "CREATE INDEX IF NOT EXISTS ix_segments_space ON segments(space, id)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS segment_fts USING fts5(text, tokenize='porter unicode61')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS file_fts USING fts5(name, tokenize='porter unicode61')",
]


@dataclass(slots=True)
class FileRecord:
    """A file's catalog row, as change detection and status need it."""

    id: int
    path_key: bytes
    path: str
    type: str
    size: int
    mtime_ns: int
    sha: str | None
    state: str
    reason: str | None


@dataclass(slots=True)
class NewFile:
    """What the engine writes for one processed file."""

    path_key: bytes
    path: str
    type: str
    size: int
    mtime_ns: int
    sha: str | None
    state: str
    reason: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(slots=True)
class SegmentRow:
    """A stored segment joined with its file, as ranking needs it."""

    id: int
    file_id: int
    space: str
    kind: str
    start: float | None
    end: float | None
    text: str | None
    path: str
    type: str


def name_tokens(path: str, meta: dict[str, Any] | None = None) -> str:
    """File name, parent folders and descriptive metadata (title, camera, date) as words, so
    BM25 finds `IMG_2041 beach` or `Canon 2019` even before a model has embedded the file."""
    parts = list(Path(path).parts[-3:])
    for key in ("title", "camera", "taken_at"):
        if meta and meta.get(key):
            parts.append(str(meta[key]))
    return " ".join(re.split(r"[\W_]+", " ".join(parts))).strip()


def file_date(meta: dict[str, Any] | None, mtime_ns: int) -> float:
    """When a file was made, as far as we know: a photo's EXIF date, else its mtime."""
    taken = (meta or {}).get("taken_at")
    if taken:
        try:
            return datetime.fromisoformat(str(taken)).timestamp()
        except ValueError:
            pass
    return mtime_ns / 1e9


def fts_terms(query: str) -> list[str]:
    """A query's distinct words, as BM25 sees them."""
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 1 or w.isdigit()]
    return list(dict.fromkeys(words))


def fts_query(query: str) -> str | None:
    """A user's words as a safe FTS5 OR-query (no syntax errors on quotes or operators)."""
    words = fts_terms(query)
    if not words:
        return None
    return " OR ".join(f'"{w}"' for w in words)


class Catalog:
    """SQLAlchemy access to the catalog database of one index."""

    def __init__(self, db_path: Path) -> None:
        self.engine = create_engine(f"sqlite:///{db_path}", future=True)

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for stmt in SCHEMA_EXTRA:
                conn.execute(text(stmt))
            have = {row[1] for row in conn.execute(text("PRAGMA table_info(files)"))}
            for name in ("date", "duration"):  # catalogs made before these columns existed
                if name not in have:
                    conn.execute(text(f"ALTER TABLE files ADD COLUMN {name} REAL"))
            conn.execute(text("UPDATE files SET date = mtime_ns / 1e9 WHERE date IS NULL"))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ---- files -------------------------------------------------------------------------

    def all_files(self) -> list[FileRecord]:
        cols = [files.c[n] for n in FileRecord.__slots__]
        with self.engine.connect() as conn:
            return [FileRecord(*row) for row in conn.execute(select(*cols))]

    def file_by_key(self, path_key: bytes) -> FileRecord | None:
        cols = [files.c[n] for n in FileRecord.__slots__]
        with self.engine.connect() as conn:
            row = conn.execute(select(*cols).where(files.c.path_key == path_key)).first()
        return FileRecord(*row) if row else None

    def file_meta(self, file_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = list(file_ids)
        with self.engine.connect() as conn:
            rows = conn.execute(select(files.c.id, files.c.meta).where(files.c.id.in_(ids)))
            return {r.id: json.loads(r.meta) if r.meta else {} for r in rows}

    def write_file(
        self,
        conn: Connection,
        record: NewFile,
        segs: Sequence[Segment],
        vectors: Sequence[np.ndarray | None],
        models: dict[str, str],
    ) -> int:
        """Replace a file's row and all its segments inside the caller's transaction."""
        values = {
            "path_key": record.path_key,
            "path": record.path,
            "type": record.type,
            "size": record.size,
            "mtime_ns": record.mtime_ns,
            "sha": record.sha,
            "state": record.state,
            "reason": record.reason,
            "meta": json.dumps(record.meta, default=str) if record.meta else None,
            "indexed_at": time.time(),
            "date": file_date(record.meta, record.mtime_ns),
            "duration": (record.meta or {}).get("duration"),
        }
        existing = conn.execute(
            select(files.c.id).where(files.c.path_key == record.path_key)
        ).scalar()
        if existing is None:
            file_id = int(conn.execute(insert(files).values(**values)).inserted_primary_key[0])
        else:
            file_id = int(existing)
            self._drop_segments(conn, [file_id])
            conn.execute(update(files).where(files.c.id == file_id).values(**values))
            conn.execute(text("DELETE FROM file_fts WHERE rowid = :id"), {"id": file_id})
        conn.execute(
            text("INSERT INTO file_fts(rowid, name) VALUES (:id, :name)"),
            {"id": file_id, "name": name_tokens(record.path, record.meta)},
        )
        self._insert_segments(conn, file_id, segs, vectors, models)
        return file_id

    def _insert_segments(
        self,
        conn: Connection,
        file_id: int,
        segs: Sequence[Segment],
        vectors: Sequence[np.ndarray | None],
        models: dict[str, str],
    ) -> None:
        for seg, vec in zip(segs, vectors, strict=True):
            seg_id = conn.execute(
                insert(segments).values(
                    file_id=file_id,
                    space=seg.space,
                    kind=seg.kind,
                    start=seg.start,
                    end=seg.end,
                    text=seg.text,
                    model=models.get(seg.space) if vec is not None else None,
                    vector=None if vec is None else np.asarray(vec, np.float32).tobytes(),
                )
            ).inserted_primary_key[0]
            if seg.text:
                conn.execute(
                    text("INSERT INTO segment_fts(rowid, text) VALUES (:id, :t)"),
                    {"id": seg_id, "t": seg.text},
                )

    def _drop_segments(self, conn: Connection, file_ids: list[int]) -> None:
        conn.execute(
            text(
                "DELETE FROM segment_fts WHERE rowid IN "
                "(SELECT id FROM segments WHERE file_id IN :ids)"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": file_ids},
        )
        conn.execute(delete(segments).where(segments.c.file_id.in_(file_ids)))

    def copy_segments(self, conn: Connection, src_file_id: int, dst_file_id: int) -> None:
        """Give an exact duplicate the vectors of its twin instead of embedding it again."""
        rows = conn.execute(
            select(
                segments.c.space,
                segments.c.kind,
                segments.c.start,
                segments.c.end,
                segments.c.text,
                segments.c.model,
                segments.c.vector,
            ).where(segments.c.file_id == src_file_id)
        ).all()
        for r in rows:
            seg_id = conn.execute(
                insert(segments).values(file_id=dst_file_id, **r._asdict())
            ).inserted_primary_key[0]
            if r.text:
                conn.execute(
                    text("INSERT INTO segment_fts(rowid, text) VALUES (:id, :t)"),
                    {"id": seg_id, "t": r.text},
                )

    def move_file(
        self, conn: Connection, file_id: int, path_key: bytes, path: str, mtime_ns: int
    ) -> None:
        conn.execute(
            update(files)
            .where(files.c.id == file_id)
            .values(path_key=path_key, path=path, mtime_ns=mtime_ns)
        )
        meta = conn.execute(select(files.c.meta).where(files.c.id == file_id)).scalar()
        conn.execute(text("DELETE FROM file_fts WHERE rowid = :id"), {"id": file_id})
        conn.execute(
            text("INSERT INTO file_fts(rowid, name) VALUES (:id, :name)"),
            {"id": file_id, "name": name_tokens(path, json.loads(meta) if meta else None)},
        )

    def touch_file(self, conn: Connection, file_id: int, mtime_ns: int) -> None:
        conn.execute(update(files).where(files.c.id == file_id).values(mtime_ns=mtime_ns))

    def delete_files(self, conn: Connection, file_ids: list[int]) -> None:
        if not file_ids:
            return
        self._drop_segments(conn, file_ids)
        conn.execute(
            text("DELETE FROM file_fts WHERE rowid IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": file_ids},
        )
        conn.execute(delete(files).where(files.c.id.in_(file_ids)))

    # ---- vectors -----------------------------------------------------------------------

    def vector_ids(self, space: str) -> np.ndarray:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(segments.c.id).where(
                    segments.c.space == space, segments.c.vector.is_not(None)
                )
            ).scalars()
            return np.fromiter(rows, dtype=np.int64)

    def vector_map(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored vectors by segment id (any mix of spaces and dimensions)."""
        out: dict[int, np.ndarray] = {}
        ids = list(ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                for sid, blob in conn.execute(
                    select(segments.c.id, segments.c.vector).where(
                        segments.c.id.in_(ids[i : i + 900]), segments.c.vector.is_not(None)
                    )
                ):
                    out[int(sid)] = np.frombuffer(blob, dtype=np.float32)
        return out

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of segment ids of one space, as (ids, rows) in the same order."""
        found = self.vector_map(ids)
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return np.fromiter(found, np.int64, len(found)), np.vstack(list(found.values()))

    def mean_vectors(self, file_id: int) -> dict[str, np.ndarray]:
        """Per space, the normalised mean of a file's stored vectors: the file as a query."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(segments.c.space, segments.c.vector).where(
                    segments.c.file_id == file_id, segments.c.vector.is_not(None)
                )
            ).all()
        grouped: dict[str, list[np.ndarray]] = {}
        for space, blob in rows:
            grouped.setdefault(space, []).append(np.frombuffer(blob, dtype=np.float32))
        out = {}
        for space, vecs in grouped.items():
            mean = np.mean(vecs, axis=0)
            out[space] = (mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32)
        return out

    def space_models(self) -> dict[str, tuple[str, int]]:
        """Per space: the model its vectors came from (most common) and the vector count."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(segments.c.space, segments.c.model, func.count())
                .where(segments.c.vector.is_not(None))
                .group_by(segments.c.space, segments.c.model)
            ).all()
        out: dict[str, tuple[str, int]] = {}
        for space, model, count in rows:
            prev = out.get(space)
            total = count + (prev[1] if prev else 0)
            best = model if prev is None or count > prev[1] else prev[0]
            out[space] = (best, total)
        return out

    def stale_files(self, space: str, model: str) -> set[int]:
        """Files holding vectors of `space` made by another model: they need re-embedding."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    select(segments.c.file_id)
                    .where(
                        segments.c.space == space,
                        segments.c.vector.is_not(None),
                        segments.c.model != model,
                    )
                    .distinct()
                ).scalars()
            )

    # ---- queries -----------------------------------------------------------------------

    def segment_rows(self, ids: Sequence[int]) -> dict[int, SegmentRow]:
        out: dict[int, SegmentRow] = {}
        ids = list(ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                q = (
                    select(
                        segments.c.id,
                        segments.c.file_id,
                        segments.c.space,
                        segments.c.kind,
                        segments.c.start,
                        segments.c.end,
                        segments.c.text,
                        files.c.path,
                        files.c.type,
                    )
                    .join(files, files.c.id == segments.c.file_id)
                    .where(segments.c.id.in_(ids[i : i + 900]))
                )
                for row in conn.execute(q):
                    out[row.id] = SegmentRow(*row)
        return out

    def allowed_segments(self, space: str | None, filters: Filters) -> np.ndarray:
        """Segment ids passing the filters, so k-NN searches only inside them."""
        sql = "SELECT s.id FROM segments s JOIN files f ON f.id = s.file_id WHERE 1=1"
        params: dict[str, Any] = {}
        if space is not None:
            sql += " AND s.space = :space"
            params["space"] = space
        sql, params = _filters(sql, params, filters)
        with self.engine.connect() as conn:
            return np.fromiter(conn.execute(text(sql), params).scalars(), dtype=np.int64)

    def bm25_segments(self, query: str, limit: int, filters: Filters) -> list[tuple[int, float]]:
        """(segment id, BM25 score >= 0) for segments whose text matches the query."""
        match = fts_query(query)
        if match is None:
            return []
        sql = (
            "SELECT s.id, -bm25(segment_fts) AS score FROM segment_fts "
            "JOIN segments s ON s.id = segment_fts.rowid JOIN files f ON f.id = s.file_id "
            "WHERE segment_fts MATCH :q"
        )
        params: dict[str, Any] = {"q": match, "limit": limit}
        sql, params = _filters(sql, params, filters)
        sql += " ORDER BY bm25(segment_fts) LIMIT :limit"
        with self.engine.connect() as conn:
            return [(int(r[0]), float(r[1])) for r in conn.execute(text(sql), params)]

    def bm25_files(self, query: str, limit: int, filters: Filters) -> list[tuple[int, float]]:
        """(file id, BM25 score >= 0) for files whose name or folders match the query."""
        match = fts_query(query)
        if match is None:
            return []
        sql = (
            "SELECT f.id, -bm25(file_fts) AS score FROM file_fts "
            "JOIN files f ON f.id = file_fts.rowid WHERE file_fts MATCH :q"
            " AND f.state IN ('indexed', 'pending')"
        )
        params: dict[str, Any] = {"q": match, "limit": limit}
        sql, params = _filters(sql, params, filters)
        sql += " ORDER BY bm25(file_fts) LIMIT :limit"
        with self.engine.connect() as conn:
            return [(int(r[0]), float(r[1])) for r in conn.execute(text(sql), params)]

    def files_with_other_meta(self, types: Sequence[str], key: str, value: str) -> set[int]:
        """Files of `types` whose recorded meta[key] differs from `value` (a changed setting,
        such as the speech model, that means their segments must be made again)."""
        sql = (
            "SELECT id FROM files WHERE type IN ({}) AND state IN ('indexed', 'pending') "
            "AND json_extract(meta, :path) IS NOT NULL AND json_extract(meta, :path) != :value"
        ).format(", ".join(f":t{i}" for i in range(len(types))))
        params = {f"t{i}": t for i, t in enumerate(types)}
        params.update(path=f"$.{key}", value=value)
        with self.engine.connect() as conn:
            return set(conn.execute(text(sql), params).scalars())

    def pending_waiting(self) -> dict[int, list[str]]:
        """Pending files and the spaces whose models they wait for."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(files.c.id, files.c.meta).where(files.c.state == "pending")
            ).all()
        out: dict[int, list[str]] = {}
        for fid, meta in rows:
            out[fid] = list(json.loads(meta).get("waiting", [])) if meta else []
        return out

    def files_by_id(self, ids: Iterable[int]) -> dict[int, FileRecord]:
        cols = [files.c[n] for n in FileRecord.__slots__]
        ids = list(ids)
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(files.c.id.in_(ids)))
            return {r.id: FileRecord(*r) for r in rows}

    def first_segments(self, file_ids: Iterable[int]) -> dict[int, SegmentRow]:
        """The first segment of each file, to show something for a file matched by name."""
        ids = list(file_ids)
        with self.engine.connect() as conn:
            first = (
                conn.execute(
                    select(func.min(segments.c.id))
                    .where(segments.c.file_id.in_(ids))
                    .group_by(segments.c.file_id)
                )
                .scalars()
                .all()
            )
        rows = self.segment_rows(first)
        return {r.file_id: r for r in rows.values()}


def _filters(sql: str, params: dict[str, Any], filters: Filters) -> tuple[str, dict[str, Any]]:
    """Append the filters as SQL on the `files` table aliased `f`."""
    if filters.types:
        names = [f"t{i}" for i in range(len(filters.types))]
        sql += f" AND f.type IN ({', '.join(':' + n for n in names)})"
        params.update(dict(zip(names, filters.types, strict=True)))
    if filters.path_glob:
        sql += " AND f.path GLOB :glob"
        params["glob"] = filters.path_glob
    for column, op, value in (
        ("date", ">=", filters.after),
        ("date", "<", filters.before),
        ("duration", ">=", filters.min_duration),
        ("duration", "<=", filters.max_duration),
    ):
        if value is not None:
            key = f"{column}_{'lo' if op.startswith('>') else 'hi'}"
            sql += f" AND f.{column} {op} :{key}"
            params[key] = value
    return sql, params
