"""Storage of voices: the `voice` segments' vectors and their speakers (clusters).

The tables are `speakers` (a cluster; a named one keeps its centroid so the name outlives
re-indexing), `voice_speakers` (segment -> speaker) and `speaker_links` (a cluster joined to
a named speaker: one person often forms several clusters, and a name covers them all);
see schema.py. Clustering itself
is searchengine/speakers.py: this module only reads and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from searchengine.store.catalog import Catalog
from searchengine.store.schema import decode_vector, decode_vectors, encode_vector


@dataclass
class VoiceRows:
    """Every stored `voice` segment of one model: ids, files, times and unit vectors."""

    ids: np.ndarray
    file_ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class SpeakerRow:
    """A cluster. `name` is its own, or that of the named speaker it joined (`joined_to`)."""

    id: int
    name: str | None
    model: str | None
    centroid: np.ndarray | None
    joined_to: int | None = None

    @property
    def head(self) -> int:
        """The id that stands for the person: the named cluster this one joined, or itself."""
        return self.joined_to if self.joined_to is not None else self.id


class VoiceStore:
    """Reads and writes voice segments' speakers in a catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.engine = catalog.engine

    def rows(self, model: str | None = None, file_ids: Iterable[int] | None = None) -> VoiceRows:
        """The voice segments with a vector (of `model` when given), in id order."""
        sql = (
            'SELECT s.id, s.file_id, s.start, s."end", s.vector FROM segments s '
            "JOIN files f ON f.id = s.file_id "
            "WHERE s.space = 'voice' AND s.vector IS NOT NULL AND f.state IN ('indexed', 'pending')"
        )
        params: dict[str, object] = {}
        if model is not None:
            sql += " AND s.model = :model"
            params["model"] = model
        if file_ids is not None:
            sql += f" AND s.file_id IN ({', '.join(str(int(i)) for i in file_ids) or 'NULL'})"
        with self.engine.connect() as conn:
            got = conn.execute(text(sql + " ORDER BY s.id"), params).all()
        if not got:
            empty = np.zeros(0)
            return VoiceRows(empty.astype(int), empty.astype(int), empty, empty, np.zeros((0, 0)))
        return VoiceRows(
            ids=np.array([r[0] for r in got], dtype=np.int64),
            file_ids=np.array([r[1] for r in got], dtype=np.int64),
            starts=np.array([r[2] or 0.0 for r in got], dtype=np.float64),
            ends=np.array([r[3] or 0.0 for r in got], dtype=np.float64),
            vectors=decode_vectors([r[4] for r in got]),
        )

    def speakers(self) -> list[SpeakerRow]:
        """Every cluster, a joined one carrying the name of the speaker it joined."""
        joined = (
            "SELECT p.id, COALESCE(p.name, n.name), p.model, p.centroid, l.named_id "
            "FROM speakers p LEFT JOIN speaker_links l ON l.speaker_id = p.id "
            "LEFT JOIN speakers n ON n.id = l.named_id ORDER BY p.id"
        )
        with self.engine.connect() as conn:
            try:
                got = conn.execute(text(joined)).all()
            except OperationalError:  # opened read-only before speaker_links existed
                got = conn.execute(
                    text("SELECT id, name, model, centroid, NULL FROM speakers ORDER BY id")
                ).all()
        return [
            SpeakerRow(
                int(i),
                name,
                model,
                decode_vector(blob) if blob else None,
                int(head) if head is not None else None,
            )
            for i, name, model, blob, head in got
        ]

    def group(self, speaker_id: int) -> list[int]:
        """The clusters of one person: the named speaker `speaker_id` is (or joined) and
        every cluster joined to it."""
        rows = self.speakers()
        head = next((r.head for r in rows if r.id == speaker_id), speaker_id)
        return [r.id for r in rows if r.head == head]

    def assignments(self) -> dict[int, int]:
        """segment id -> speaker id."""
        with self.engine.connect() as conn:
            got = conn.execute(text("SELECT segment_id, speaker_id FROM voice_speakers")).all()
        return {int(s): int(p) for s, p in got}

    def save(
        self,
        model: str,
        clusters: Mapping[int | str, tuple[list[int], np.ndarray]],
    ) -> dict[int | str, int]:
        """Replace every assignment: `clusters` maps a speaker id (existing) or a new key
        (str) to (segment ids, centroid). Unnamed speakers left without segments go; named
        ones stay with their last centroid. Returns key -> speaker id."""
        out: dict[int | str, int] = {}
        with self.catalog.transaction() as conn:
            conn.execute(text("DELETE FROM voice_speakers"))
            for key, (segs, centroid) in clusters.items():
                blob = encode_vector(centroid)
                if isinstance(key, int):
                    conn.execute(
                        text("UPDATE speakers SET centroid = :c, model = :m WHERE id = :id"),
                        {"c": blob, "m": model, "id": key},
                    )
                    sid = key
                else:
                    sid = int(
                        conn.execute(
                            text("INSERT INTO speakers(model, centroid) VALUES (:m, :c)"),
                            {"m": model, "c": blob},
                        ).lastrowid
                    )
                out[key] = sid
                if segs:
                    conn.execute(
                        text("INSERT INTO voice_speakers(segment_id, speaker_id) VALUES (:s, :p)"),
                        [{"s": int(s), "p": sid} for s in segs],
                    )
            conn.execute(
                text(
                    "DELETE FROM speakers WHERE name IS NULL AND id NOT IN "
                    "(SELECT DISTINCT speaker_id FROM voice_speakers) "
                    "AND id NOT IN (SELECT speaker_id FROM speaker_links)"
                )
            )
            _record_moments(conn)
        return out

    def set_name(self, speaker_id: int, name: str | None) -> None:
        """Name a cluster (None clears it). It leaves any speaker it had joined; clearing a
        named speaker's name also frees the clusters joined to it."""
        with self.catalog.transaction() as conn:
            conn.execute(
                text("DELETE FROM speaker_links WHERE speaker_id = :id"), {"id": speaker_id}
            )
            if name is None:
                conn.execute(
                    text("DELETE FROM speaker_links WHERE named_id = :id"), {"id": speaker_id}
                )
            conn.execute(
                text("UPDATE speakers SET name = :n WHERE id = :id"),
                {"n": name, "id": speaker_id},
            )
            _record_moments(conn)

    def join(self, speaker_id: int, named_id: int) -> None:
        """Join a cluster to a named speaker (one person, several clusters): it takes that
        name everywhere, keeps its own centroid and moments, so the join survives
        re-clustering and a voice model change. Clusters joined to it follow it."""
        with self.catalog.transaction() as conn:
            conn.execute(text("UPDATE speakers SET name = NULL WHERE id = :id"), {"id": speaker_id})
            conn.execute(
                text("UPDATE speaker_links SET named_id = :n WHERE named_id = :id"),
                {"n": named_id, "id": speaker_id},
            )
            conn.execute(
                text("INSERT OR REPLACE INTO speaker_links(speaker_id, named_id) VALUES (:id, :n)"),
                {"id": speaker_id, "n": named_id},
            )
            _record_moments(conn)

    def moments(self, speaker_ids: Iterable[int]) -> dict[int, list[tuple[int, float, float]]]:
        """Per named speaker: (file id, start, end) where it talked when last clustered."""
        ids = ", ".join(str(int(i)) for i in speaker_ids)
        if not ids:
            return {}
        sql = (
            'SELECT speaker_id, file_id, start, "end" FROM speaker_moments '
            f"WHERE speaker_id IN ({ids}) ORDER BY file_id, start"
        )
        out: dict[int, list[tuple[int, float, float]]] = {}
        with self.engine.connect() as conn:
            for sid, fid, start, end in conn.execute(text(sql)):
                out.setdefault(int(sid), []).append((int(fid), float(start), float(end)))
        return out

    def by_name(self, name: str) -> SpeakerRow | None:
        """The named speaker (not a cluster joined to it) called `name`, in any case."""
        folded = name.strip().casefold()
        for row in self.speakers():
            if row.joined_to is None and row.name is not None and row.name.casefold() == folded:
                return row
        return None

    def speech_of(self, file_ids: Iterable[int]) -> dict[int, list[tuple[float, float, int]]]:
        """Per file: (start, end, speaker id) of each clustered voice segment, in time order."""
        ids = ", ".join(str(int(i)) for i in file_ids)
        if not ids:
            return {}
        sql = (
            'SELECT s.file_id, s.start, s."end", v.speaker_id FROM voice_speakers v '
            f"JOIN segments s ON s.id = v.segment_id WHERE s.file_id IN ({ids}) ORDER BY s.start"
        )
        out: dict[int, list[tuple[float, float, int]]] = {}
        with self.engine.connect() as conn:
            for fid, start, end, sid in conn.execute(text(sql)):
                out.setdefault(int(fid), []).append((float(start), float(end), int(sid)))
        return out

    def members(self) -> dict[int, list[tuple[int, float, float]]]:
        """Per speaker id: (file id, start, end) of its segments."""
        sql = (
            'SELECT v.speaker_id, s.file_id, s.start, s."end" FROM voice_speakers v '
            "JOIN segments s ON s.id = v.segment_id ORDER BY s.file_id, s.start"
        )
        out: dict[int, list[tuple[int, float, float]]] = {}
        with self.engine.connect() as conn:
            for sid, fid, start, end in conn.execute(text(sql)):
                out.setdefault(int(sid), []).append((int(fid), float(start), float(end)))
        return out


def _record_moments(conn: Connection, speaker_id: int | None = None) -> None:
    """Remember where named speakers talk now (all of them, or one): a speaker without
    segments (its voice model changed) keeps its last moments, so its name can follow."""
    only = "" if speaker_id is None else f" AND v.speaker_id = {int(speaker_id)}"
    conn.execute(
        text(
            "DELETE FROM speaker_moments WHERE speaker_id IN "
            f"(SELECT v.speaker_id FROM voice_speakers v WHERE 1 = 1{only}) "
            "OR speaker_id IN (SELECT id FROM speakers WHERE name IS NULL "
            "AND id NOT IN (SELECT speaker_id FROM speaker_links))"
        )
    )
    conn.execute(
        text(
            'INSERT INTO speaker_moments(speaker_id, file_id, start, "end") '
            'SELECT v.speaker_id, s.file_id, s.start, s."end" FROM voice_speakers v '
            "JOIN segments s ON s.id = v.segment_id JOIN speakers p ON p.id = v.speaker_id "
            "WHERE (p.name IS NOT NULL OR p.id IN (SELECT speaker_id FROM speaker_links))"
            f"{only}"
        )
    )
