"""The SQLite catalog: files, segments with their vectors, and FTS5 for BM25.

It is the source of truth; every change to a file is one transaction, so a kill at any
moment leaves either the old or the new state of that file, never a mix.

Format (see `schema.py` for versions and migrations): vectors are stored once, as float16
blobs; each file also keeps one whole-file vector per space (the normalised mean of its
segment vectors). Deleting a vector leaves a tombstone, so the FAISS caches catch up with
new ids (`id > max_id`, ids are never reused) and removed ones without reading every id.
The FTS5 index of segment text is external-content: the text is stored once, in `segments`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
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
from sqlalchemy.exc import OperationalError

from searchengine.geo import place_names
from searchengine.store import schema
from searchengine.store.schema import decode_vector, decode_vectors, encode_vector
from searchengine.types import Filters, Segment
from searchengine.understand.words import fold

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
    Column("file_id", Integer, ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("space", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("start", Float),
    Column("end", Float),
    Column("text", Text),
    Column("model", Text),  # model key the vector was made with
    Column("vector", LargeBinary),  # float16, L2-normalised; NULL while pending
    Column("loc", Text),  # JSON: {"page": n} and/or {"box": [x, y, w, h]} (format 4)
    sqlite_autoincrement=True,  # ids are never reused, so a stale FAISS id can't alias
)

file_vectors = Table(
    "file_vectors",
    metadata,
    Column("id", Integer, primary_key=True),  # a new id whenever the file's vector changes
    Column("file_id", Integer, ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("space", String(16), nullable=False),
    Column("model", Text),
    Column("vector", LargeBinary, nullable=False),  # normalised mean of the segment vectors
    sqlite_autoincrement=True,
)

LEVEL_TABLES = {"segment": segments, "file": file_vectors}
"""Vector levels with a FAISS cache each: moments and passages, and whole files."""

MAX_TERM_DOCS = 5000
"""However large the library, a word in more passages than this is too common to pay for."""
COMMON_TERM_SHARE = 0.05
"""A query word found in more than this share of passages adds little to BM25 and costs a
scan of its whole posting list: it is dropped while rarer words remain."""


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
    loc: str | None = None
    """The segment's place as stored (JSON text), see `Segment.loc`."""

    def place(self) -> dict[str, Any] | None:
        return json.loads(self.loc) if self.loc else None


def name_tokens(path: str, meta: dict[str, Any] | None = None) -> str:
    """File name, parent folders and descriptive metadata (title, camera, date, place) as
    words, so BM25 finds `IMG_2041 beach`, `Canon 2019` or `Lisbon` even before a model has
    embedded the file."""
    parts = list(Path(path).parts[-3:])
    for key in ("title", "camera", "taken_at"):
        if meta and meta.get(key):
            parts.append(str(meta[key]))
    names = dict.fromkeys(name for _, name in place_names((meta or {}).get("place")))
    parts.extend(names)
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
    """SQLAlchemy access to the catalog database of one index.

    `readonly` opens the database without write access (a search on a read-only disk, or
    beside a running `index`): nothing is created or migrated, and nothing is written."""

    def __init__(self, db_path: Path, *, readonly: bool = False) -> None:
        self.path = db_path
        self.readonly = readonly
        self._terms: dict[tuple[str, int], list[str]] = {}
        if readonly:
            try:
                self._connect(f"sqlite:///file:{db_path}?mode=ro&uri=true", readonly=True)
            except OperationalError:
                # a read-only disk where SQLite cannot make the WAL index files: nothing
                # can change the database there, so it is opened as immutable
                self._connect(f"sqlite:///file:{db_path}?mode=ro&immutable=1&uri=true", True)
        else:
            self._connect(f"sqlite:///{db_path}", readonly=False)
            with self.engine.begin() as conn:
                self.migrated_from = schema.upgrade(conn)

    def _connect(self, url: str, readonly: bool) -> None:
        self.engine = create_engine(url, future=True)

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if not readonly:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        if readonly:
            try:
                with self.engine.connect() as conn:
                    found = schema.version(conn)
            except OperationalError:
                self.engine.dispose()
                raise
            if found != schema.SCHEMA_VERSION:
                self.engine.dispose()
                raise OutdatedFormat(found)
            self.migrated_from = found

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
        _write_places(conn, file_id, record.meta)
        _insert_segments(conn, file_id, segs, vectors, models)
        refresh_file_vectors(conn, [file_id])
        return file_id

    def _drop_segments(self, conn: Connection, file_ids: list[int]) -> None:
        conn.execute(delete(segments).where(segments.c.file_id.in_(file_ids)))
        conn.execute(delete(file_vectors).where(file_vectors.c.file_id.in_(file_ids)))

    def file_segments(self, file_id: int) -> list[SegmentRow]:
        """Every segment of one file, in order."""
        with self.engine.connect() as conn:
            q = _segment_rows_select().where(segments.c.file_id == file_id).order_by(segments.c.id)
            return [SegmentRow(*row) for row in conn.execute(q)]

    def replace_segments(
        self,
        conn: Connection,
        file_id: int,
        drop: Sequence[int],
        segs: Sequence[Segment],
        vectors: Sequence[np.ndarray | None],
        models: dict[str, str],
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Swap some of a file's segments (one space's, or its transcript lines) for new
        ones inside the caller's transaction; the rest stay as they are."""
        for i in range(0, len(drop), 900):
            conn.execute(delete(segments).where(segments.c.id.in_(list(drop[i : i + 900]))))
        _insert_segments(conn, file_id, segs, vectors, models)
        if meta:
            old = conn.execute(select(files.c.meta).where(files.c.id == file_id)).scalar()
            merged = {**(json.loads(old) if old else {}), **meta}
            conn.execute(update(files).where(files.c.id == file_id).values(meta=json.dumps(merged)))
        refresh_file_vectors(conn, [file_id])

    def copy_segments(self, conn: Connection, src_file_id: int, dst_file_id: int) -> None:
        """Give an exact duplicate the vectors of its twin instead of embedding it again."""
        conn.execute(
            text(
                "INSERT INTO segments "
                '(file_id, space, kind, start, "end", text, model, vector, loc) '
                'SELECT :dst, space, kind, start, "end", text, model, vector, loc FROM segments '
                "WHERE file_id = :src ORDER BY id"
            ),
            {"dst": dst_file_id, "src": src_file_id},
        )
        refresh_file_vectors(conn, [dst_file_id])

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
        for i in range(0, len(file_ids), 500):
            part = file_ids[i : i + 500]
            self._drop_segments(conn, part)
            conn.execute(
                text("DELETE FROM file_fts WHERE rowid IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": part},
            )
            conn.execute(delete(files).where(files.c.id.in_(part)))

    # ---- vectors -----------------------------------------------------------------------

    def count_vectors(self, space: str, level: str = "segment") -> int:
        table = LEVEL_TABLES[level]
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(table)
                    .where(table.c.space == space, table.c.vector.is_not(None))
                ).scalar()
                or 0
            )

    def vector_ids(self, space: str, level: str = "segment") -> np.ndarray:
        """Every vector id of a space (for checks and tests; queries never need them all)."""
        table = LEVEL_TABLES[level]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.id).where(table.c.space == space, table.c.vector.is_not(None))
            ).scalars()
            return np.fromiter(rows, dtype=np.int64)

    def vectors_after(
        self, space: str, after_id: int, limit: int, level: str = "segment"
    ) -> tuple[np.ndarray, list[bytes]]:
        """(ids, blobs) of a space's vectors with id > after_id, in id order: how a cache
        catches up with what was added since it was saved."""
        table = LEVEL_TABLES[level]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.id, table.c.vector)
                .where(table.c.space == space, table.c.id > after_id, table.c.vector.is_not(None))
                .order_by(table.c.id)
                .limit(limit)
            ).all()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows)), [r[1] for r in rows]

    def newest_dim(self, space: str, level: str = "segment") -> int | None:
        """The size of a space's newest vector: what a rebuilt cache should hold."""
        table = LEVEL_TABLES[level].name
        with self.engine.connect() as conn:
            size = conn.execute(
                text(
                    f"SELECT length(vector) FROM {table} WHERE space = :s "
                    "AND vector IS NOT NULL ORDER BY id DESC LIMIT 1"
                ),
                {"s": space},
            ).scalar()
        return None if size is None else int(size) // 2

    def max_id(self, level: str = "segment") -> int:
        name = LEVEL_TABLES[level].name
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT seq FROM sqlite_sequence WHERE name = :n"), {"n": name}
                ).scalar()
                or 0
            )

    def tombstones_after(self, space: str, level: str, after_seq: int) -> tuple[int, np.ndarray]:
        """(newest seq seen, item ids) of the space's tombstones made after `after_seq`."""
        with self.engine.connect() as conn:
            newest = int(conn.execute(text("SELECT max(seq) FROM tombstones")).scalar() or 0)
            rows = conn.execute(
                text(
                    "SELECT seq, item_id FROM tombstones WHERE seq > :s AND seq <= :n "
                    "AND level = :l AND space = :sp ORDER BY seq"
                ),
                {"s": after_seq, "n": newest, "l": level, "sp": space},
            ).all()
        ids = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        return max(after_seq, newest), ids

    def tomb_seq(self) -> int:
        """The newest tombstone's number (0 when none was ever made)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT seq FROM sqlite_sequence WHERE name = 'tombstones'")
                ).scalar()
                or 0
            )

    def pruned_through(self) -> int:
        """Tombstones up to this number were dropped: a cache older than that must reload."""
        with self.engine.connect() as conn:
            value = conn.execute(
                text("SELECT value FROM meta WHERE key = 'tombstones_pruned'")
            ).scalar()
        return int(value or 0)

    def prune_tombstones(self, through: int) -> None:
        with self.transaction() as conn:
            conn.execute(text("DELETE FROM tombstones WHERE seq <= :s"), {"s": through})
            conn.execute(
                text(
                    "INSERT INTO meta(key, value) VALUES ('tombstones_pruned', :s) "
                    "ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), :s)"
                ),
                {"s": through},
            )

    def vector_map(self, ids: Sequence[int], level: str = "segment") -> dict[int, np.ndarray]:
        """Stored vectors by id (any mix of spaces and dimensions), as float32."""
        table = LEVEL_TABLES[level]
        by_size: dict[int, tuple[list[int], list[bytes]]] = {}
        ids = list(ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                for sid, blob in conn.execute(
                    select(table.c.id, table.c.vector).where(
                        table.c.id.in_(ids[i : i + 900]), table.c.vector.is_not(None)
                    )
                ):
                    group = by_size.setdefault(len(blob), ([], []))
                    group[0].append(int(sid))
                    group[1].append(blob)
        out: dict[int, np.ndarray] = {}
        for found, blobs in by_size.values():
            out.update(zip(found, decode_vectors(blobs), strict=True))
        return out

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of segment ids of one space, as (ids, rows) in the same order."""
        found = self.vector_map(ids)
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return np.fromiter(found, np.int64, len(found)), np.vstack(list(found.values()))

    def sample_vectors(
        self, space: str, n: int, seed: int = 0, level: str = "segment"
    ) -> np.ndarray:
        """About `n` of a space's segment vectors, spread over the whole id range, without
        reading every id (for calibration and for training an approximate index)."""
        table = LEVEL_TABLES[level]
        hi = self.max_id(level)
        if hi == 0:
            return np.zeros((0, 0), np.float32)
        rng = np.random.default_rng(seed)
        picks = np.unique(rng.integers(1, hi + 1, size=min(hi, n * 3)))
        rows: list[bytes] = []
        wanted = (table.c.space == space, table.c.vector.is_not(None))
        with self.engine.connect() as conn:
            for i in range(0, len(picks), 900):
                rows += (
                    conn.execute(
                        select(table.c.vector).where(
                            table.c.id.in_(picks[i : i + 900].tolist()), *wanted
                        )
                    )
                    .scalars()
                    .all()
                )
                if len(rows) >= n:
                    break
            if len(rows) < n // 2:  # this space's ids are sparse: take them in order
                rows = conn.execute(select(table.c.vector).where(*wanted).limit(n)).scalars().all()
        if not rows:
            return np.zeros((0, 0), np.float32)
        size = len(rows[-1])
        return decode_vectors([r for r in rows[:n] if len(r) == size])

    def file_vector_map(self, file_ids: Sequence[int], space: str) -> dict[int, np.ndarray]:
        """Whole-file vectors of files in one space, by file id."""
        out: dict[int, np.ndarray] = {}
        ids = list(file_ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                for fid, blob in conn.execute(
                    select(file_vectors.c.file_id, file_vectors.c.vector).where(
                        file_vectors.c.file_id.in_(ids[i : i + 900]),
                        file_vectors.c.space == space,
                    )
                ):
                    out[int(fid)] = decode_vector(blob)
        return out

    def file_ids_of_vectors(self, ids: Sequence[int]) -> dict[int, int]:
        """file_vectors id -> file id."""
        out: dict[int, int] = {}
        ids = list(ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                for vid, fid in conn.execute(
                    select(file_vectors.c.id, file_vectors.c.file_id).where(
                        file_vectors.c.id.in_(ids[i : i + 900])
                    )
                ):
                    out[int(vid)] = int(fid)
        return out

    def mean_vectors(self, file_id: int) -> dict[str, np.ndarray]:
        """Per space, the file's whole-file vector: the file as a query."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(file_vectors.c.space, file_vectors.c.vector).where(
                    file_vectors.c.file_id == file_id
                )
            ).all()
        return {space: decode_vector(blob) for space, blob in rows}

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
        """Files holding vectors of `space` made by another model: they need re-embedding.
        Read from the whole-file vectors (one row per file, indexed by model), so a run over
        an unchanged library does not scan every segment."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    select(file_vectors.c.file_id).where(
                        file_vectors.c.space == space, file_vectors.c.model != model
                    )
                ).scalars()
            )

    def has_other_models(self, space: str, model: str) -> bool:
        """Whether vectors of another model remain in the space (a switch half done): two
        seeks in the whole-file vectors' (space, model) index, whatever the library's size."""
        with self.engine.connect() as conn:
            for op in ("<", ">"):
                sql = f"SELECT 1 FROM file_vectors WHERE space = :s AND model {op} :m LIMIT 1"
                if conn.execute(text(sql), {"s": space, "m": model}).first():
                    return True
        return False

    def models_in_use(self, space: str) -> set[str]:
        """The model keys a space's vectors were made with (more than one mid-switch)."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    select(file_vectors.c.model)
                    .where(file_vectors.c.space == space, file_vectors.c.model.is_not(None))
                    .distinct()
                ).scalars()
            )

    def model_identities(self, space: str) -> dict[str, str]:
        """Model key -> content identity of the weights that made this space's vectors."""
        with self.engine.connect() as conn:
            value = conn.execute(
                text("SELECT value FROM meta WHERE key = :k"), {"k": f"identity:{space}"}
            ).scalar()
        try:
            found = json.loads(value) if value else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def record_model_identity(self, space: str, key: str, identity: str) -> None:
        known = self.model_identities(space)
        if known.get(key) == identity:
            return
        known[key] = identity
        with self.transaction() as conn:
            conn.execute(
                text(
                    "INSERT INTO meta(key, value) VALUES (:k, :v) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                ),
                {"k": f"identity:{space}", "v": json.dumps(known, sort_keys=True)},
            )

    def meta_values(self, prefix: str) -> dict[str, str]:
        """The `meta` rows whose key starts with `prefix` (query adapters: "adapter:")."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT key, value FROM meta WHERE substr(key, 1, :n) = :p"),
                {"n": len(prefix), "p": prefix},
            ).all()
        return {str(k): str(v) for k, v in rows if v is not None}

    def set_meta_value(self, key: str, value: str | None) -> None:
        """Write (or, with None, delete) one `meta` row, in its own transaction."""
        with self.transaction() as conn:
            if value is None:
                conn.execute(text("DELETE FROM meta WHERE key = :k"), {"k": key})
            else:
                conn.execute(
                    text(
                        "INSERT INTO meta(key, value) VALUES (:k, :v) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                    ),
                    {"k": key, "v": value},
                )

    def rename_model(self, space: str, old: Sequence[str], new: str) -> None:
        """Vectors of `old` keys become `new`'s: the same weights under another name (a
        moved checkpoint). One transaction: a kill leaves either name, both consistent."""
        with self.transaction() as conn:
            for table in (segments, file_vectors):
                conn.execute(
                    table.update()
                    .where(table.c.space == space, table.c.model.in_(list(old)))
                    .values(model=new)
                )

    # ---- queries -----------------------------------------------------------------------

    def segment_rows(self, ids: Sequence[int]) -> dict[int, SegmentRow]:
        out: dict[int, SegmentRow] = {}
        ids = list(ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                q = _segment_rows_select().where(segments.c.id.in_(ids[i : i + 900]))
                for row in conn.execute(q):
                    out[row.id] = SegmentRow(*row)
        return out

    def passing(self, ids: Sequence[int], filters: Filters, level: str = "segment") -> set[int]:
        """Which of these segment (or file-vector) ids pass the filters: filtering after the
        k-NN costs one lookup per candidate, whatever the size of the library."""
        table = LEVEL_TABLES[level]
        out: set[int] = set()
        ids = list(ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                sql = (  # CROSS JOIN: look the candidates up, never scan the files first
                    f"SELECT s.id FROM {table.name} s CROSS JOIN files f ON f.id = s.file_id "
                    "WHERE s.id IN :ids"
                )
                sql, params = _model_filter(sql, {"ids": ids[i : i + 900]}, filters)
                sql, params = _filters(sql, params, filters)
                stmt = text(sql).bindparams(bindparam("ids", expanding=True))
                out.update(conn.execute(stmt, params).scalars())
        return out

    def allowed_ids(
        self, space: str, filters: Filters, limit: int, level: str = "segment"
    ) -> np.ndarray:
        """Ids of a space passing the filters, at most `limit` (more means: not selective)."""
        sql, params = _allowed_select("s.id", space, filters, level, limit)
        with self.engine.connect() as conn:
            return np.fromiter(conn.execute(text(sql), params).scalars(), dtype=np.int64)

    def allowed_vectors(
        self, space: str, filters: Filters, limit: int, level: str, dim: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, float32 rows) of a space's vectors of size `dim` passing the filters, read
        in the listing query itself; None when more than `limit` pass (not selective)."""
        sql, params = _allowed_select("s.id, s.vector", space, filters, level, limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(text(sql), params).all()
        if len(rows) > limit:
            return None
        rows = [r for r in rows if len(r[1]) == 2 * dim]  # a half-done switch's other size
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return ids, decode_vectors([r[1] for r in rows])

    def useful_terms(self, query: str) -> list[str]:
        """The query's words, less those so common that they only cost time: a word in more
        than COMMON_TERM_SHARE of the passages (and never more than MAX_TERM_DOCS) is
        dropped while rarer words remain; of only common words the rarest is kept if its
        list is not huge. The cost of BM25 is bounded by the kept lists' lengths."""
        words = fts_terms(query)
        if not words:
            return words
        with self.engine.connect() as conn:
            total = int(
                conn.execute(
                    text("SELECT seq FROM sqlite_sequence WHERE name = 'segments'")
                ).scalar()
                or 0
            )
            key = (query, total)
            if key in self._terms:
                return self._terms[key]
            stem_of = porter_stems(words)
            counts = {
                w: int(
                    conn.execute(
                        text("SELECT doc FROM segment_vocab WHERE term = :t"), {"t": stem_of[w]}
                    ).scalar()
                    or 0
                )
                for w in words
            }
        cap = max(50, min(int(total * COMMON_TERM_SHARE), MAX_TERM_DOCS))
        kept = [w for w in words if counts[w] <= cap]
        if not kept:
            rarest = min(words, key=lambda w: counts[w])
            kept = [rarest] if counts[rarest] <= 4 * cap else []
        if len(self._terms) > 256:
            self._terms.clear()
        self._terms[key] = kept
        return kept

    def bm25_segments(self, query: str, limit: int, filters: Filters) -> list[tuple[int, float]]:
        """(segment id, BM25 score >= 0) for segments whose text matches the query."""
        match = fts_query(" ".join(self.useful_terms(query)))
        if match is None:
            return []
        params: dict[str, Any] = {"q": match, "limit": limit}
        if filters.active():
            sql = (
                "SELECT s.id, -bm25(segment_fts) AS score FROM segment_fts "
                "CROSS JOIN segments s ON s.id = segment_fts.rowid "
                "CROSS JOIN files f ON f.id = s.file_id WHERE segment_fts MATCH :q"
            )
            sql, params = _filters(sql, params, filters)
        else:  # every indexed row is a stored segment's (the triggers keep it so)
            sql = (
                "SELECT rowid, -bm25(segment_fts) AS score FROM segment_fts "
                "WHERE segment_fts MATCH :q"
            )
        sql += " ORDER BY bm25(segment_fts) LIMIT :limit"
        with self.engine.connect() as conn:
            return [(int(r[0]), float(r[1])) for r in conn.execute(text(sql), params)]

    def bm25_of(self, query: str, texts: dict[int, str | None]) -> dict[int, float]:
        """BM25 of given segments for the query (0 where they do not match), so every fused
        candidate is scored alike, whichever route found it. Only candidates whose text can
        hold a query word are asked of FTS5 (a word, or its stem's first letters)."""
        terms = self.useful_terms(query)
        match = fts_query(" ".join(terms))
        if match is None or not texts:
            return {}
        stems = porter_stems(terms)
        probes = {p for w in terms for p in (w, stems[w][:4])}
        ids = [sid for sid, t in texts.items() if t and any(p in t.lower() for p in probes)]
        out: dict[int, float] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                stmt = text(
                    "SELECT rowid, -bm25(segment_fts) FROM segment_fts "
                    "WHERE segment_fts MATCH :q AND rowid IN :ids"
                ).bindparams(bindparam("ids", expanding=True))
                for sid, score in conn.execute(stmt, {"q": match, "ids": ids[i : i + 900]}):
                    out[int(sid)] = float(score)
        return out

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

    def known_places(self, keys: Iterable[str]) -> dict[str, str]:
        """Of these folded phrases (see understand.words.fold), those naming the place of
        an indexed file -> the stored spelling ("sao paulo" -> "São Paulo")."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        stmt = text(
            "SELECT key, min(name) FROM file_places WHERE key IN :keys GROUP BY key"
        ).bindparams(bindparam("keys", expanding=True))
        with self.engine.connect() as conn:
            return {str(k): str(n) for k, n in conn.execute(stmt, {"keys": keys})}

    def file_dates(self, file_ids: Iterable[int]) -> dict[int, float]:
        """When each file was made, as far as the catalog knows (EXIF date, else mtime)."""
        ids = list(file_ids)
        out: dict[int, float] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                rows = conn.execute(
                    select(files.c.id, files.c.date).where(files.c.id.in_(ids[i : i + 900]))
                )
                out.update({int(r.id): float(r.date) for r in rows if r.date is not None})
        return out

    def same_content(self, path_key: bytes, sha: str | None) -> set[int]:
        """The file at `path_key` (if indexed) and every file whose content hash is `sha`."""
        with self.engine.connect() as conn:
            here = select(files.c.id).where(files.c.path_key == path_key)
            out = set(conn.execute(here).scalars())
            if sha:
                out.update(conn.execute(select(files.c.id).where(files.c.sha == sha)).scalars())
        return {int(i) for i in out}

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

    def failed_to_retry(self, attempts: int) -> dict[int, int]:
        """Failed files whose failure may pass (see the indexer's `transient`) and that
        fewer than `attempts` runs have tried -> how many have."""
        sql = (
            "SELECT id, json_extract(meta, '$.attempts') FROM files WHERE state = 'failed' "
            "AND meta LIKE '%\"attempts\"%' AND json_extract(meta, '$.attempts') < :n"
        )
        with self.engine.connect() as conn:
            return {int(r[0]): int(r[1]) for r in conn.execute(text(sql), {"n": attempts})}

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

    def unreachable(self) -> dict[int, tuple[str, str]]:
        """Files kept though the last run could not read them or a folder above them:
        id -> (the path that could not be read, why). Kept in the file's meta."""
        sql = (
            "SELECT id, json_extract(meta, '$.unreachable.at'), "
            "json_extract(meta, '$.unreachable.reason') FROM files "
            "WHERE meta LIKE '%\"unreachable\"%' AND json_extract(meta, '$.unreachable') "
            "IS NOT NULL"
        )
        with self.engine.connect() as conn:
            return {int(r[0]): (str(r[1]), str(r[2])) for r in conn.execute(text(sql))}

    def mark_unreachable(
        self, conn: Connection, marks: dict[int, tuple[str, str]], clear: Iterable[int] = ()
    ) -> None:
        """Record (path, reason) on files a walk could not reach; forget it on `clear`."""
        if marks:
            conn.execute(
                text(
                    "UPDATE files SET meta = json_set(coalesce(meta, '{}'), '$.unreachable', "
                    "json_object('at', :at, 'reason', :reason)) WHERE id = :id"
                ),
                [{"id": fid, "at": at, "reason": why} for fid, (at, why) in marks.items()],
            )
        ids = list(clear)
        for i in range(0, len(ids), 500):
            conn.execute(
                text(
                    "UPDATE files SET meta = json_remove(meta, '$.unreachable') WHERE id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": ids[i : i + 500]},
            )

    def files_by_id(self, ids: Iterable[int]) -> dict[int, FileRecord]:
        cols = [files.c[n] for n in FileRecord.__slots__]
        ids = list(ids)
        out: dict[int, FileRecord] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                rows = conn.execute(select(*cols).where(files.c.id.in_(ids[i : i + 900])))
                out.update({r.id: FileRecord(*r) for r in rows})
        return out

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

    def best_segments(
        self, file_ids: Iterable[int], space: str, query: np.ndarray, per_file: int
    ) -> dict[int, list[tuple[float, SegmentRow]]]:
        """A few best segments of each file for a query vector (exact, from stored vectors):
        the moments a whole-file hit shows."""
        ids = list(file_ids)
        found: dict[int, list[tuple[int, bytes]]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                for sid, fid, blob in conn.execute(
                    select(segments.c.id, segments.c.file_id, segments.c.vector).where(
                        segments.c.file_id.in_(ids[i : i + 900]),
                        segments.c.space == space,
                        segments.c.vector.is_not(None),
                    )
                ):
                    if len(blob) == 2 * query.shape[0]:
                        found.setdefault(int(fid), []).append((int(sid), blob))
        scored: dict[int, list[tuple[float, int]]] = {}
        for fid, rows in found.items():
            sims = decode_vectors([b for _, b in rows]) @ query
            order = np.argsort(-sims, kind="stable")[:per_file]
            scored[fid] = [(float(sims[j]), rows[j][0]) for j in order]
        seg_rows = self.segment_rows([sid for v in scored.values() for _, sid in v])
        return {
            fid: [(s, seg_rows[sid]) for s, sid in v if sid in seg_rows]
            for fid, v in scored.items()
        }


class OutdatedFormat(Exception):
    """A reader found a catalog in another format version (it may not migrate it)."""

    def __init__(self, found: int) -> None:
        self.found = found
        super().__init__(found)


def _segment_rows_select() -> Any:
    """Segments joined with their file, in SegmentRow's field order."""
    return select(
        segments.c.id,
        segments.c.file_id,
        segments.c.space,
        segments.c.kind,
        segments.c.start,
        segments.c.end,
        segments.c.text,
        files.c.path,
        files.c.type,
        segments.c.loc,
    ).join(files, files.c.id == segments.c.file_id)


def _insert_segments(
    conn: Connection,
    file_id: int,
    segs: Sequence[Segment],
    vectors: Sequence[np.ndarray | None],
    models: dict[str, str],
) -> None:
    """A file's new segments, with the model that made each vector (none while pending)."""
    rows = [
        {
            "file_id": file_id,
            "space": seg.space,
            "kind": seg.kind,
            "start": seg.start,
            "end": seg.end,
            "text": seg.text,
            "loc": json.dumps(seg.loc) if seg.loc else None,
            "model": models.get(seg.space) if vec is not None else None,
            "vector": None if vec is None else encode_vector(vec),
        }
        for seg, vec in zip(segs, vectors, strict=True)
    ]
    if rows:
        conn.execute(insert(segments), rows)


def _write_places(conn: Connection, file_id: int, meta: dict[str, Any] | None) -> None:
    """A file's place names (from `meta["place"]`, see geo.py), replacing any it had."""
    conn.execute(text("DELETE FROM file_places WHERE file_id = :id"), {"id": file_id})
    rows = [
        {"id": file_id, "level": level, "name": name, "key": fold(name)}
        for level, name in place_names((meta or {}).get("place"))
        if fold(name)
    ]
    if rows:
        conn.execute(
            text(
                "INSERT INTO file_places(file_id, level, name, key) "
                "VALUES (:id, :level, :name, :key)"
            ),
            rows,
        )


def fill_places(conn: Connection, batch: int = 500) -> int:
    """Name the places of files that have a GPS position but no place yet (a catalog from
    before places were kept): their meta gains `place`, `file_places` its names and the
    file-name document the words. Returns how many files got a place."""
    from searchengine.geo import places_of

    rows = conn.execute(
        text(
            "SELECT id, path, meta FROM files WHERE meta LIKE '%\"gps\"%' "
            "AND json_extract(meta, '$.gps.lat') IS NOT NULL "
            "AND json_extract(meta, '$.place') IS NULL"
        )
    ).all()
    named = 0
    for i in range(0, len(rows), batch):
        part = rows[i : i + batch]
        metas = [json.loads(r.meta) for r in part]
        coords = [(float(m["gps"]["lat"]), float(m["gps"]["lon"])) for m in metas]
        for row, meta, place in zip(part, metas, places_of(coords), strict=True):
            if not place:
                continue
            meta["place"] = place
            conn.execute(
                update(files).where(files.c.id == row.id).values(meta=json.dumps(meta))
            )
            _write_places(conn, row.id, meta)
            conn.execute(text("DELETE FROM file_fts WHERE rowid = :id"), {"id": row.id})
            conn.execute(
                text("INSERT INTO file_fts(rowid, name) VALUES (:id, :name)"),
                {"id": row.id, "name": name_tokens(row.path, meta)},
            )
            named += 1
    return named


def refresh_file_vectors(conn: Connection, file_ids: Sequence[int]) -> None:
    """Recompute the whole-file vector of each file and space from its segment vectors (the
    normalised mean of its dominant model's vectors). A changed vector gets a new id, so the
    file-level FAISS cache sees a removal and an addition."""
    if not file_ids:
        return
    rows = conn.execute(
        select(segments.c.file_id, segments.c.space, segments.c.model, segments.c.vector)
        .where(segments.c.file_id.in_(list(file_ids)), segments.c.vector.is_not(None))
        .order_by(segments.c.id)
    ).all()
    groups: dict[tuple[int, str], dict[tuple[str | None, int], list[bytes]]] = {}
    for fid, space, model, blob in rows:
        groups.setdefault((fid, space), {}).setdefault((model, len(blob)), []).append(blob)
    conn.execute(delete(file_vectors).where(file_vectors.c.file_id.in_(list(file_ids))))
    new = []
    for (fid, space), by_model in groups.items():
        (model, _), blobs = max(by_model.items(), key=lambda kv: len(kv[1]))
        mean = decode_vectors(blobs).mean(axis=0)
        mean /= np.linalg.norm(mean) or 1.0
        new.append({"file_id": fid, "space": space, "model": model, "vector": encode_vector(mean)})
    if new:
        conn.execute(insert(file_vectors), new)


_STEMMER: sqlite3.Connection | None = None
_STEMMER_LOCK = threading.Lock()


def porter_stems(words: Sequence[str]) -> dict[str, str]:
    """Each word as FTS5's porter tokenizer stores it, asked of an in-memory FTS5 table
    (no second stemmer to drift from SQLite's)."""
    global _STEMMER
    with _STEMMER_LOCK:  # one in-memory table: one query's words at a time
        if _STEMMER is None:
            _STEMMER = sqlite3.connect(":memory:", check_same_thread=False)
            _STEMMER.execute("CREATE VIRTUAL TABLE w USING fts5(t, tokenize='porter unicode61')")
            _STEMMER.execute("CREATE VIRTUAL TABLE v USING fts5vocab(w, 'instance')")
        db = _STEMMER
        out: dict[str, str] = {}
        for i, word in enumerate(words):
            db.execute("INSERT INTO w(rowid, t) VALUES (?, ?)", (i + 1, word))
        for term, doc in db.execute("SELECT term, doc FROM v"):
            out.setdefault(words[int(doc) - 1], term)
        db.execute("DELETE FROM w")
    return {w: out.get(w, w) for w in words}


def _allowed_select(
    columns: str, space: str, filters: Filters, level: str, limit: int
) -> tuple[str, dict[str, Any]]:
    """A space's stored vectors (alias `s`) passing the filters, at most `limit` rows."""
    table = LEVEL_TABLES[level]
    sql = (  # the files first: a selective filter passes few of them
        f"SELECT {columns} FROM files f CROSS JOIN {table.name} s ON s.file_id = f.id "
        "WHERE s.space = :space AND s.vector IS NOT NULL"
    )
    sql, params = _model_filter(sql, {"space": space}, filters)
    sql, params = _filters(sql, params, filters)
    params["limit"] = limit
    return sql + " LIMIT :limit", params


def _model_filter(
    sql: str, params: dict[str, Any], filters: Filters
) -> tuple[str, dict[str, Any]]:
    """Vectors (alias `s`) of one model only, when the filters ask for it."""
    if filters.model is not None:
        sql += " AND s.model = :model"
        params["model"] = filters.model
    return sql, params


def _filters(sql: str, params: dict[str, Any], filters: Filters) -> tuple[str, dict[str, Any]]:
    """Append the filters as SQL on the `files` table aliased `f`."""
    if filters.types:
        names = [f"t{i}" for i in range(len(filters.types))]
        sql += f" AND f.type IN ({', '.join(':' + n for n in names)})"
        params.update(dict(zip(names, filters.types, strict=True)))
    if filters.path_glob:
        sql += " AND f.path GLOB :glob"
        params["glob"] = filters.path_glob
    if filters.place:
        sql += " AND f.id IN (SELECT file_id FROM file_places WHERE key = :place)"
        params["place"] = filters.place
    if filters.speaker is not None:
        sql += (
            " AND f.id IN (SELECT vs.file_id FROM voice_speakers vv JOIN segments vs"
            " ON vs.id = vv.segment_id WHERE vv.speaker_id = :speaker OR vv.speaker_id IN"
            " (SELECT speaker_id FROM speaker_links WHERE named_id = :speaker))"
        )
        params["speaker"] = int(filters.speaker)
    if filters.exclude:  # integers only: safe to inline, and no list parameter to expand
        sql += f" AND f.id NOT IN ({', '.join(str(int(i)) for i in filters.exclude)})"
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
