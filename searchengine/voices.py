"""The engine's voice features: search by voice, speakers, who speaks in a hit.

A mixin of `Engine` (engine.py), kept apart so the facade stays readable; it uses the
engine's catalog, config and model registry, and speakers.py for the clustering logic.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.exc import OperationalError

from searchengine import speakers as spk
from searchengine.crawler import display_path
from searchengine.errors import DecodeError, ModelUnavailable, Skip, UserError
from searchengine.store.voices import VoiceStore
from searchengine.types import Hit, Hits, HitSegment

if TYPE_CHECKING:
    from searchengine.config import IndexConfig
    from searchengine.encoders.registry import ModelRegistry
    from searchengine.store.catalog import Catalog

MAX_QUERY_S = 120.0
"""Speech of a query recording used at most (its first two minutes)."""


@dataclass
class Speaker:
    """One speaker of the index: a cluster of voice segments, or a named person's clusters
    (the named one, `id`, and those joined to it, all in `clusters`)."""

    id: int
    name: str | None
    seconds: float
    segments: int
    files: list[str]
    sample: tuple[str, float, float] | None  # path, start, end of its longest piece
    clusters: list[int] = field(default_factory=list)
    joined: bool = False
    """Set by `name_speaker` when the name given joined this cluster to a named speaker."""

    @property
    def label(self) -> str:
        return spk.label(self.id, self.name)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "label": self.label,
            "seconds": round(self.seconds, 2),
            "segments": self.segments,
            "files": self.files,
            "clusters": self.clusters or [self.id],
        }
        if self.sample is not None:
            out["sample"] = {"path": self.sample[0], "start": self.sample[1], "end": self.sample[2]}
        return out


def refresh_speakers(catalog: Catalog, config: IndexConfig) -> int | None:
    """Re-cluster voices after an index run when the clustered segments changed; returns the
    number of speakers, or None when nothing had to be done."""
    model = config.model_key("voice") if "voice" in config.models else "off"
    if model == "off":
        return None
    voices = VoiceStore(catalog)
    rows = voices.rows(model)
    if set(rows.ids.tolist()) == set(voices.assignments()):
        return None
    return spk.recluster(voices, model)


class VoiceMethods:
    """Mixed into Engine: needs `catalog`, `config`, `models`, `writer()`, `_self_and_copies`."""

    catalog: Catalog
    config: IndexConfig
    models: ModelRegistry

    @property
    def voices(self) -> VoiceStore:
        return VoiceStore(self.catalog)

    def _voice_model(self) -> str:
        model = self.config.models.get("voice", "off")
        if model == "off":
            raise UserError("voices are off for this index (it was made with --voice off)")
        return self.config.model_key("voice")

    def voice_of(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The voice in a recording (audio or video), as one unit vector: the mean of its
        speech pieces (the first MAX_QUERY_S seconds of speech)."""
        from searchengine.encoders.voice import voice_pieces
        from searchengine.media import decode_file

        target = os.path.abspath(os.fspath(path))
        if not os.path.isfile(target):
            what = "a folder, not a file" if os.path.isdir(target) else "no such file"
            raise UserError(f"{what}: {display_path(target)}")
        try:
            decoded = decode_file(target, self.config)
        except (Skip, DecodeError, OSError) as exc:
            raise UserError(f"cannot use {display_path(target)} as a voice sample: {exc}") from None
        if decoded.speech_source is None:
            raise UserError(f"{display_path(target)} has no sound to take a voice from")
        pieces: list[np.ndarray] = []
        heard = 0.0
        try:
            for offset, pcm in decoded.speech_source():
                for a, b, piece in voice_pieces(pcm, float(offset)):
                    pieces.append(piece)
                    heard += b - a
                if heard >= MAX_QUERY_S:
                    break
        except (DecodeError, OSError) as exc:
            raise UserError(f"cannot decode {display_path(target)}: {exc}") from None
        if not pieces:
            raise UserError(f"no speech heard in {display_path(target)}: no voice to search for")
        try:
            rows = self.models.encoder("voice").embed_items(pieces)
        except ModelUnavailable as exc:
            raise UserError(str(exc)) from None
        weights = np.array([len(p) for p in pieces], dtype=np.float32)[:, None]
        mean = (rows * weights).sum(axis=0)
        return mean / (np.linalg.norm(mean) or 1.0)

    def similar_voice(
        self,
        path: str | os.PathLike[str],
        k: int | None = None,
        types: list[str] | None = None,
        *,
        min_score: float = spk.MATCH,
        include_self: bool = False,
    ) -> Hits:
        """Files and moments where the voice of the recording at `path` speaks, best first
        (a few seconds of one person is enough). `min_score`: the cosine a moment needs."""
        model = self._voice_model()
        k = 10 if k is None else k
        if k <= 0:
            raise UserError("-k must be at least 1")
        query = self.voice_of(path)
        exclude: set[int] = set()
        if not include_self:
            exclude = set(self._self_and_copies(path) or ())  # type: ignore[attr-defined]
        rows = self.voices.rows(model)
        matches = spk.search_voice(rows, query, k * 4, min_score, exclude)
        records = self.catalog.files_by_id([m.file_id for m in matches])
        hits = Hits()
        for m in matches:
            rec = records.get(m.file_id)
            if rec is None or (types and rec.type not in types):
                continue
            hits.append(
                Hit(
                    path=rec.path,
                    type=rec.type,
                    score=round(m.score, 4),
                    raw_score=m.score,
                    segments=[
                        HitSegment(a, b, None, round(s, 4), "voice", "voice")
                        for a, b, s in m.moments
                    ],
                    reason=f"voice {m.score:.2f}",
                    file_id=m.file_id,
                )
            )
            if len(hits) == k:
                break
        self.annotate_speakers(hits)
        return hits

    def speakers(self) -> list[Speaker]:
        """The speakers of the index, most speaking time first; a named person's clusters
        (the named one and those joined to it) count as one speaker."""
        voices = self.voices
        members = voices.members()
        rows = {s.id: s for s in voices.speakers()}
        people: dict[int, list[int]] = {}
        for sid in members:
            head = rows[sid].head if sid in rows else sid
            people.setdefault(head, []).append(sid)
        records = self.catalog.files_by_id({fid for m in members.values() for fid, _, _ in m})
        out = []
        for head, ids in people.items():
            segs = [seg for sid in ids for seg in members[sid]]
            files = sorted({records[f].path for f, _, _ in segs if f in records})
            fid, a, b = max(segs, key=lambda s: s[2] - s[1])
            sample = (records[fid].path, a, b) if fid in records else None
            seconds = sum(e - s for _, s, e in segs)
            name = rows[head].name if head in rows else None
            out.append(Speaker(head, name, seconds, len(segs), files, sample, sorted(ids)))
        out.sort(key=lambda s: (-s.seconds, s.id))
        return out

    def _cluster_id(self, ref: str | int) -> int:
        """A cluster by id ("3", "speaker 3"), or the named speaker called `ref`."""
        text = str(ref).strip()
        match = re.fullmatch(r"(?:speaker\s*)?#?(\d+)", text, flags=re.IGNORECASE)
        known = {s.id for s in self.voices.speakers()}
        if match and int(match.group(1)) in known:
            return int(match.group(1))
        named = self.voices.by_name(text)
        if named is not None:
            return named.id
        raise UserError(f"no speaker '{text}' in this index (see `searchengine speakers`)")

    def speaker_id(self, ref: str | int) -> int:
        """A speaker by id ("3", "speaker 3") or by name (any case); UserError if unknown.
        A cluster joined to a named speaker stands for that speaker (all its clusters)."""
        sid = self._cluster_id(ref)
        row = next((s for s in self.voices.speakers() if s.id == sid), None)
        return row.head if row is not None else sid

    def speaker_label(self, speaker_id: int) -> str:
        """A speaker's name, or "speaker N" when it has none."""
        row = next((s for s in self.voices.speakers() if s.id == speaker_id), None)
        return spk.label(speaker_id, row.name if row else None)

    def name_speaker(self, ref: str | int, name: str) -> Speaker | None:
        """Give a cluster a name. A name another speaker has joins this cluster to that
        speaker (one person often forms several clusters): the name then covers them all,
        in `--speaker`, hits and `speakers`. The name stays with the voice: re-indexing, new
        recordings of that voice and a voice model change keep it. `clear_speaker_name`
        removes a name; an empty name is refused."""
        name = (name or "").strip()
        if not name:
            raise UserError("a speaker's name cannot be empty (to remove a name: --clear)")
        if re.fullmatch(r"(?:speaker\s*)?#?\d+", name, flags=re.IGNORECASE):
            raise UserError(f"'{name}' looks like a speaker id: choose a name")
        sid = self._cluster_id(ref)
        row = next(s for s in self.voices.speakers() if s.id == sid)
        other = self.voices.by_name(name)
        joined = other is not None and other.id != row.head
        with self.writer():  # type: ignore[attr-defined]
            if other is not None and joined:
                self.voices.join(sid, other.id)
            elif other is None or other.id == sid:
                self.voices.set_name(sid, name)  # a new name, or a new spelling of its own
        found = self._person(sid)
        if found is not None:
            found.joined = joined
        return found

    def clear_speaker_name(self, ref: str | int) -> Speaker | None:
        """Remove a name: a cluster joined to a named speaker leaves it; a named speaker
        loses its name, and the clusters joined to it become unnamed speakers again."""
        sid = self._cluster_id(ref)
        with self.writer():  # type: ignore[attr-defined]
            self.voices.set_name(sid, None)
        return self._person(sid)

    def _person(self, cluster_id: int) -> Speaker | None:
        """The listed speaker holding a cluster."""
        return next(
            (s for s in self.speakers() if cluster_id in s.clusters or s.id == cluster_id), None
        )

    def speaker_in_query(self, query: str) -> tuple[int, str] | None:
        """A named speaker mentioned in a query ("Alice budget"): (id, the other words)."""
        folded = f" {' '.join(query.split())} ".casefold()
        for row in sorted(self.voices.speakers(), key=lambda s: -len(s.name or "")):
            if not row.name:
                continue
            needle = f" {' '.join(row.name.split())} ".casefold()
            at = folded.find(needle)
            if at >= 0:
                rest = (folded[:at] + " " + folded[at + len(needle) :]).split()
                words = query.split()
                kept = [w for w in words if w.casefold() in rest]
                return row.head, " ".join(kept)
        return None

    def speaker_hits(self, speaker_id: int, k: int) -> Hits:
        """The files where a speaker talks (in any of its clusters), most speaking time
        first, with their moments."""
        members = self.voices.members()
        segs = [seg for sid in self.voices.group(speaker_id) for seg in members.get(sid, [])]
        by_file: dict[int, list[tuple[float, float, float]]] = {}
        for fid, a, b in segs:
            by_file.setdefault(fid, []).append((a, b, 1.0))
        total = sum(b - a for _, a, b in segs) or 1.0
        records = self.catalog.files_by_id(by_file)
        hits = Hits()
        ranked = sorted(by_file.items(), key=lambda kv: -sum(b - a for a, b, _ in kv[1]))
        for fid, moments in ranked[:k]:
            rec = records.get(fid)
            if rec is None:
                continue
            share = sum(b - a for a, b, _ in moments) / total
            hits.append(
                Hit(
                    path=rec.path,
                    type=rec.type,
                    score=round(share, 4),
                    raw_score=share,
                    segments=[
                        HitSegment(a, b, None, 1.0, "voice", "voice")
                        for a, b, _ in spk.merge_moments(moments)
                    ],
                    reason="speaker",
                    file_id=fid,
                )
            )
        self.annotate_speakers(hits)
        return hits

    def speaker_moments_first(self, hits: list[Hit], speaker_id: int) -> None:
        """With a speaker filter, each hit's moments where that speaker talks come first
        (the file may hold other voices; the hit is about this one)."""
        row = next((s for s in self.voices.speakers() if s.id == speaker_id), None)
        wanted = spk.label(speaker_id, row.name if row else None)
        for hit in hits:
            hit.segments.sort(key=lambda seg: seg.speaker != wanted)

    def annotate_speakers(self, hits: list[Hit]) -> None:
        """Say who speaks in each timed moment of the hits (when voices were clustered)."""
        timed = [h for h in hits if h.type in ("audio", "video") and h.file_id]
        if not timed:
            return
        try:
            speech = self.voices.speech_of({h.file_id for h in timed})
        except OperationalError:  # a catalog opened read-only before its voice tables
            return
        if not speech:
            return
        names = {s.id: s.name for s in self.voices.speakers()}
        for hit in timed:
            for seg in hit.segments:
                sid = spk.speaker_at(speech.get(hit.file_id, []), seg.start, seg.end)
                if sid is not None:
                    seg.speaker = spk.label(sid, names.get(sid))
