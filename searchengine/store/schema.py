"""The catalog's format: its version, how a new catalog is laid out, and how older ones
are brought up to date (explicit, one step per version, each in one transaction).

Version 1 is the format of the first release: float32 vector blobs, an FTS5 table holding
its own copy of the segment text, no tombstones and no whole-file vectors (it had no
version number: `PRAGMA user_version` 0 with a `segments` table). Version 2 stores vectors
as float16, indexes segment text with external-content FTS5, keeps whole-file vectors and
tombstones. Version 3 adds `file_places`: the place names (locality, city, county,
region, country) of photos and videos with a GPS position, for the place filter; the names
also join the file-name FTS5 document, so BM25 finds "Lisbon". Version 4 gives segments a
`loc`: JSON saying where a segment is beyond start/end (a PDF page, a box in an image, see
types.Segment), so hits can say "p. 3". A catalog newer than this code is refused.

Tables added within a version (created by `upgrade` on every open): `speakers` (voice
clusters, a named one with its centroid), `voice_speakers` (segment -> speaker) and
`speaker_moments` (where a named speaker talks, kept across a voice model change),
`speaker_links` (a cluster joined to a named speaker: one person, several clusters).
`map_fits` and `map_points`: the stored layout of `searchengine map` (searchengine/atlas/).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import Connection, text

SCHEMA_VERSION = 4

TABLES = [
    """CREATE TABLE IF NOT EXISTS files (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path_key BLOB NOT NULL UNIQUE,
        path TEXT NOT NULL,
        type VARCHAR(16) NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha VARCHAR(64),
        state VARCHAR(16) NOT NULL,
        reason TEXT,
        meta TEXT,
        indexed_at FLOAT,
        date FLOAT,
        duration FLOAT)""",
    "CREATE INDEX IF NOT EXISTS ix_files_type ON files(type)",
    "CREATE INDEX IF NOT EXISTS ix_files_sha ON files(sha)",
    "CREATE INDEX IF NOT EXISTS ix_files_state ON files(state)",
    "CREATE INDEX IF NOT EXISTS ix_files_date ON files(date)",
    """CREATE TABLE IF NOT EXISTS segments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        space VARCHAR(16) NOT NULL,
        kind VARCHAR(16) NOT NULL,
        start FLOAT,
        "end" FLOAT,
        text TEXT,
        model TEXT,
        vector BLOB,
        loc TEXT)""",
    "CREATE INDEX IF NOT EXISTS ix_segments_file_id ON segments(file_id)",
    "CREATE INDEX IF NOT EXISTS ix_segments_space ON segments(space, id)",
    """CREATE TABLE IF NOT EXISTS file_vectors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        space VARCHAR(16) NOT NULL,
        model TEXT,
        vector BLOB NOT NULL,
        UNIQUE (file_id, space))""",
    "CREATE INDEX IF NOT EXISTS ix_file_vectors_space ON file_vectors(space, id)",
    "CREATE INDEX IF NOT EXISTS ix_file_vectors_model ON file_vectors(space, model)",
    """CREATE TABLE IF NOT EXISTS tombstones (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        level VARCHAR(8) NOT NULL,
        space VARCHAR(16) NOT NULL,
        item_id INTEGER NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS segment_fts USING fts5(text, content='segments', "
    "content_rowid='id', tokenize='porter unicode61')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS segment_vocab USING fts5vocab(segment_fts, 'row')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS file_fts USING fts5(name, tokenize='porter unicode61')",
    """CREATE TABLE IF NOT EXISTS file_places (
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        level VARCHAR(16) NOT NULL,
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (file_id, level))""",
    "CREATE INDEX IF NOT EXISTS ix_file_places_key ON file_places(key, file_id)",
    # speakers: clusters of `voice` segments (searchengine/speakers.py); a named one keeps
    # its centroid, so its name survives re-indexing and new files that match it join it
    """CREATE TABLE IF NOT EXISTS speakers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT UNIQUE,
        model TEXT,
        centroid BLOB)""",
    # voice_speakers: which speaker each `voice` segment was clustered into
    """CREATE TABLE IF NOT EXISTS voice_speakers (
        segment_id INTEGER PRIMARY KEY REFERENCES segments(id) ON DELETE CASCADE,
        speaker_id INTEGER NOT NULL REFERENCES speakers(id) ON DELETE CASCADE)""",
    "CREATE INDEX IF NOT EXISTS ix_voice_speakers_speaker ON voice_speakers(speaker_id)",
    # speaker_moments: where a named speaker talks (file, start, end), so its name can
    # follow the voice to another voice model (whose vectors the old centroid cannot match)
    """CREATE TABLE IF NOT EXISTS speaker_moments (
        speaker_id INTEGER NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
        file_id INTEGER NOT NULL,
        start FLOAT NOT NULL,
        "end" FLOAT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_speaker_moments_speaker ON speaker_moments(speaker_id)",
    # map_fits: per space, the stored map layout's model, method and reducer file (atlas/)
    """CREATE TABLE IF NOT EXISTS map_fits (
        space VARCHAR(16) PRIMARY KEY,
        model TEXT NOT NULL,
        method VARCHAR(8) NOT NULL,
        fitted INTEGER NOT NULL,
        reducer TEXT NOT NULL,
        created FLOAT NOT NULL)""",
    # map_points: a file's 2-D place on its space's map, and the file vector it came from
    """CREATE TABLE IF NOT EXISTS map_points (
        space VARCHAR(16) NOT NULL,
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        vector_id INTEGER NOT NULL,
        x FLOAT NOT NULL,
        y FLOAT NOT NULL,
        PRIMARY KEY (space, file_id))""",
    # speaker_links: a cluster given a name another cluster has: it joins that named speaker
    # (one person often forms several clusters; each keeps its own centroid and moments)
    """CREATE TABLE IF NOT EXISTS speaker_links (
        speaker_id INTEGER PRIMARY KEY REFERENCES speakers(id) ON DELETE CASCADE,
        named_id INTEGER NOT NULL REFERENCES speakers(id) ON DELETE CASCADE)""",
    "CREATE INDEX IF NOT EXISTS ix_speaker_links_named ON speaker_links(named_id)",
]

TRIGGERS = [
    # external-content FTS5 follows the segments table; a removed vector leaves a tombstone
    """CREATE TRIGGER IF NOT EXISTS segments_ai AFTER INSERT ON segments
       WHEN new.text IS NOT NULL BEGIN
         INSERT INTO segment_fts(rowid, text) VALUES (new.id, new.text);
       END""",
    """CREATE TRIGGER IF NOT EXISTS segments_ad AFTER DELETE ON segments BEGIN
         INSERT INTO segment_fts(segment_fts, rowid, text)
           SELECT 'delete', old.id, old.text WHERE old.text IS NOT NULL;
         INSERT INTO tombstones(level, space, item_id)
           SELECT 'segment', old.space, old.id WHERE old.vector IS NOT NULL;
       END""",
    """CREATE TRIGGER IF NOT EXISTS segments_au BEFORE UPDATE OF text, vector ON segments BEGIN
         SELECT RAISE(ABORT, 'segments are replaced, never updated in place');
       END""",
    """CREATE TRIGGER IF NOT EXISTS file_vectors_ad AFTER DELETE ON file_vectors BEGIN
         INSERT INTO tombstones(level, space, item_id) VALUES ('file', old.space, old.id);
       END""",
]


def encode_vector(vec: np.ndarray) -> bytes:
    """A vector at rest: float16 (half the bytes; cosine error far below ranking noise)."""
    return np.asarray(vec, dtype=np.float16).tobytes()


def decode_vectors(blobs: list[bytes]) -> np.ndarray:
    """Stored blobs of one dimension as float32 rows, unit length again (float16 rounding
    moves a norm by ~1e-4: enough to score a file 0.9998 against itself)."""
    rows = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), -1)
    rows = rows.astype(np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def decode_vector(blob: bytes) -> np.ndarray:
    return decode_vectors([blob])[0]


def version(conn: Connection) -> int:
    """The catalog's format version; 1 for a catalog of the first release, 0 for a new one."""
    found = int(conn.execute(text("PRAGMA user_version")).scalar() or 0)
    if found:
        return found
    has_segments = conn.execute(
        text("SELECT 1 FROM sqlite_master WHERE type='table' AND name='segments'")
    ).first()
    return 1 if has_segments else 0


def create(conn: Connection) -> None:
    for stmt in TABLES + TRIGGERS:
        conn.execute(text(stmt))
    conn.execute(text(f"PRAGMA user_version = {SCHEMA_VERSION}"))


def _v1_to_v2(conn: Connection) -> None:
    """float32 -> float16 blobs, FTS5 rebuilt as external content, whole-file vectors,
    tombstones. The FAISS files of version 1 are dropped by the caller (derived caches)."""
    have = {row[1] for row in conn.execute(text("PRAGMA table_info(files)"))}
    for name in ("date", "duration"):  # the very first catalogs lacked these columns
        if name not in have:
            conn.execute(text(f"ALTER TABLE files ADD COLUMN {name} REAL"))
    conn.execute(text("UPDATE files SET date = mtime_ns / 1e9 WHERE date IS NULL"))
    conn.execute(text("DROP TABLE IF EXISTS segment_fts"))
    last = 0
    while True:
        rows = conn.execute(
            text(
                "SELECT id, vector FROM segments WHERE id > :last AND vector IS NOT NULL "
                "ORDER BY id LIMIT 5000"
            ),
            {"last": last},
        ).all()
        if not rows:
            break
        conn.execute(
            text("UPDATE segments SET vector = :v WHERE id = :id"),
            [
                {"id": sid, "v": encode_vector(np.frombuffer(blob, dtype=np.float32))}
                for sid, blob in rows
            ],
        )
        last = rows[-1][0]
    for stmt in TABLES + TRIGGERS:
        conn.execute(text(stmt))
    conn.execute(text("INSERT INTO segment_fts(segment_fts) VALUES ('rebuild')"))
    from searchengine.store.catalog import refresh_file_vectors

    file_ids = [r[0] for r in conn.execute(text("SELECT id FROM files"))]
    for i in range(0, len(file_ids), 500):
        refresh_file_vectors(conn, file_ids[i : i + 500])
    conn.execute(text("DELETE FROM tombstones"))


def _v2_to_v3(conn: Connection) -> None:
    """`file_places`, filled for the files that already have a GPS position (their meta
    gains `place`, their file-name document the names)."""
    for stmt in TABLES:
        conn.execute(text(stmt))
    from searchengine.store.catalog import fill_places

    fill_places(conn)


def _v3_to_v4(conn: Connection) -> None:
    """Segments gain `loc` (NULL for every existing one: their places were never known; a
    file indexed again gets them)."""
    have = {row[1] for row in conn.execute(text("PRAGMA table_info(segments)"))}
    if "loc" not in have:
        conn.execute(text("ALTER TABLE segments ADD COLUMN loc TEXT"))
    for stmt in TABLES:
        conn.execute(text(stmt))


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
}
"""from-version -> step to the next version."""


def upgrade(conn: Connection) -> int:
    """Bring the catalog to SCHEMA_VERSION inside the caller's transaction; returns the
    version found. Raises ValueError for a catalog newer than this code."""
    found = version(conn)
    if found == 0:
        create(conn)
        return 0
    if found > SCHEMA_VERSION:
        raise ValueError(
            f"this index was written by a newer searchengine (format {found}, this version "
            f"reads up to {SCHEMA_VERSION}): upgrade searchengine to use it"
        )
    v = found
    while v < SCHEMA_VERSION:
        MIGRATIONS[v](conn)
        v += 1
        conn.execute(text(f"PRAGMA user_version = {v}"))
    for stmt in TABLES + TRIGGERS:  # all "IF NOT EXISTS": indexes added within a version
        conn.execute(text(stmt))
    return found
