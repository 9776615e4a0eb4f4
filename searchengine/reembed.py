"""Change only what changed: when one space's model changes, re-embed that space's segments;
when speech is turned on or off, add or drop transcript lines. A file's other segments and
vectors are left as they are, and each file's update lies within one transaction (the file
alone, or a batch of files), so a kill keeps every file searchable with either its old or its
new vectors.

Text segments keep their text, so a new text model re-embeds them without decoding the
file. Image frames and sound windows are not stored: a new CLIP or CLAP model decodes the
file again and keeps only that space's segments. Such a file is done alone, part by part
(memory is one part's, whatever its length), under the indexer's decode time limit and
crash journal, like a first indexing.

Two halves, so that a cluster run (`index --cluster`) decodes on its workers as it does for
new files: `Remaker` decodes and embeds with no catalog access (a `Remake` in, a `Remade`
out: what crosses to a Ray worker, see cluster.py), and `Reembedder`, on the driver, plans
which stored segments go, embeds stored text when the text model changed too, and commits.
On the workers there is no crash journal: a worker that dies is the cluster pool's to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from searchengine import faults
from searchengine.deadline import DeadlineExceeded, call_with_deadline, iterate_with_deadline
from searchengine.errors import ModelUnavailable
from searchengine.inflight import CRASH_REASON, crashes_in_child
from searchengine.media import decode_file
from searchengine.types import Decoded, Segment

if TYPE_CHECKING:
    from searchengine.config import IndexConfig
    from searchengine.encoders.registry import ModelRegistry
    from searchengine.indexer import IndexSummary
    from searchengine.store.catalog import FileRecord
    from searchengine.store.store import Store


@dataclass
class Redo:
    """What to make again for one file."""

    spaces: set[str] = field(default_factory=set)  # spaces whose vectors are stale
    speech: bool = False  # the speech setting changed


@dataclass
class Remake:
    """One file to decode again (what goes to a cluster worker, which holds the config)."""

    file_id: int
    path: str
    spaces: set[str]  # the spaces besides text whose segments are made again
    speech: bool  # make the transcript lines and voice pieces again
    size: int = 0  # bytes on disk: the cluster pool cuts its batches by size


@dataclass
class Remade:
    """A `Remake` done: the new segments (payloads dropped) with their vectors and the
    file's new speech settings; or `kept`, why the file keeps its old vectors (a line for
    the run's notes; the file is tried again next run)."""

    file_id: int
    new: list[Segment] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    kept: str | None = None


Transcribe = Callable[[Decoded, "IndexSummary"], list[Segment]]
InFlight = Callable[[bytes], AbstractContextManager[None]]
Remote = Callable[[list[Remake], "IndexSummary", Callable[[list[Remade]], None]], None]
"""`remote(remakes, summary, take)`: does the remakes elsewhere (a Ray cluster) and calls
`take` with each batch of `Remade`s as it comes back, every remake exactly once."""
SPEECH_KINDS = ("speech", "voice")
"""Segments made from the sound track's speech: transcript lines and voice pieces."""
BATCH = 32
"""Files whose new segments are embedded together (one model call per space)."""


class Remaker:
    """Decodes a file again and embeds the segments of its stale spaces; no catalog access,
    so a cluster worker runs it as the driver does."""

    def __init__(
        self,
        models: ModelRegistry,
        config: IndexConfig,
        transcribe: Transcribe,
        *,
        limit_s: float = 600.0,
    ) -> None:
        """`limit_s` bounds each decoding step, as in a first indexing."""
        self.models = models
        self.config = config
        self.transcribe = transcribe
        self.limit_s = limit_s

    def remake(self, job: Remake, summary: IndexSummary) -> Remade:
        """The file's new segments and vectors, part by part; trouble with the file (a
        missing model, a decode error or time-out) is a `kept` reason, not an exception."""
        new: list[Segment] = []
        vectors: list[np.ndarray | None] = []
        meta: dict[str, str] = {}
        try:
            for part in self._parts(job.path, job.speech, summary, meta):
                keep = [s for s in part if s.space in job.spaces or s.kind in SPEECH_KINDS]
                vectors += self._embed(keep)
                new += keep
        except ModelUnavailable as exc:
            return Remade(job.file_id, kept=str(exc))
        except DeadlineExceeded:
            why = f"kept the old vectors of {job.path}: decoding took too long"
            return Remade(job.file_id, kept=why)
        except Exception as exc:  # one file's trouble is that file's, not the run's
            why = f"kept the old vectors of {job.path}: {type(exc).__name__}: {exc}"
            return Remade(job.file_id, kept=why)
        return Remade(job.file_id, new, vectors, meta)

    def _parts(
        self, path: str, speech: bool, summary: IndexSummary, meta: dict[str, str]
    ) -> Iterator[list[Segment]]:
        """A file's segments one part at a time, each step under the time limit."""
        decoded = call_with_deadline(lambda: decode_file(path, self.config), self.limit_s)
        yield decoded.segments
        yield from iterate_with_deadline(decoded.stream or (), self.limit_s)
        if speech:
            lines = self.transcribe(decoded, summary)
            for key in ("speech", "voice"):
                meta[key] = decoded.meta.get(key, self.config.models.get(key, "off"))
            yield lines

    def _embed(self, segs: list[Segment]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(segs)
        by_space: dict[str, list[int]] = {}
        for i, seg in enumerate(segs):
            by_space.setdefault(seg.space, []).append(i)
        for space, idx in by_space.items():
            rows = self.models.encoder(space).embed_items([segs[i].payload for i in idx])
            for i, row in zip(idx, rows, strict=True):
                out[i] = row
        for seg in segs:
            seg.payload = None
        return out


class Reembedder(Remaker):
    """Applies `Redo`s; the caller holds the writer lock."""

    def __init__(
        self,
        store: Store,
        models: ModelRegistry,
        config: IndexConfig,
        transcribe: Transcribe,
        *,
        in_flight: InFlight | None = None,
        limit_s: float = 600.0,
        suspects: Mapping[bytes, int] | None = None,
        probe: Callable[[str], None] | None = None,
        remote: Remote | None = None,
    ) -> None:
        """`in_flight(path_key)` journals a file while its decoders run (a crash there is
        traced to it); `limit_s` bounds each decoding step, as in a first indexing.
        `suspects`: files in flight at the last run's crash; each is decoded first in a
        forked child by `probe(path)`, and one that crashes it keeps its old vectors.
        `remote`: where the files to decode again go (a cluster run); None: here, one by
        one. A worker's crash is the cluster pool's to retry, so no journal there."""
        super().__init__(models, config, transcribe, limit_s=limit_s)
        self.catalog = store.catalog
        self.in_flight = in_flight or (lambda _key: nullcontext())
        self.suspects = suspects or {}
        self.probe = probe
        self.remote = remote

    def run(self, work: dict[int, Redo], summary: IndexSummary, report: Callable) -> int:
        """Redo each file, embedding BATCH files per model call; returns how many were
        updated. A file that cannot be redone now (model missing, decode error) keeps its
        old segments and is retried next run."""
        records = self.catalog.files_by_id(work)
        items = [(records[f], r) for f, r in work.items() if f in records]
        done = 0
        decoding = [(rec, redo) for rec, redo in items if self._decodes(redo)]
        if self.remote is not None and decoding:
            done += self._redo_remote(decoding, summary, report, len(items))
        else:
            for i, (rec, redo) in enumerate(decoding):
                report("embed", i, len(items), rec.path)
                done += self._redo_alone(rec, redo, summary)
        items = [(rec, redo) for rec, redo in items if not self._decodes(redo)]
        for start in range(0, len(items), BATCH):
            report("embed", start, len(items), items[start][0].path)
            plans = []
            for rec, redo in items[start : start + BATCH]:
                try:
                    plans.append(self._plan(rec, redo, summary))
                except Exception as exc:  # one file's trouble is that file's, not the run's
                    summary.note(f"kept the old vectors of {rec.path}: {type(exc).__name__}: {exc}")
            try:
                vectors = self._embed([seg for plan in plans for seg in plan.new])
            except ModelUnavailable as exc:
                summary.note(str(exc))
                continue
            except Exception as exc:  # a model error: these files keep their old vectors
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                summary.note(f"kept the old vectors of {len(plans)} files: {first}")
                continue
            self._commit(plans, vectors)
            done += len(plans)
        report("embed", len(items), len(items), "")
        return done

    def _decodes(self, redo: Redo) -> bool:
        """Whether the file must be decoded again (frames, sound windows, a transcript)."""
        speech_on = any(self.config.models.get(k, "off") != "off" for k in ("speech", "voice"))
        return any(s != "text" for s in redo.spaces) or (redo.speech and speech_on)

    def _redo_alone(self, rec: FileRecord, redo: Redo, summary: IndexSummary) -> int:
        """Decode one file again and embed its new segments part by part; 1 if its
        segments were replaced, 0 if it keeps its old ones (retried next run)."""
        if self._crashes(rec, summary):
            return 0
        with self.in_flight(rec.path_key):
            remade = self.remake(_remake(rec, redo), summary)
        planned = self._finish(rec, redo, remade, summary)
        if planned is None:
            return 0
        self._commit([planned[0]], planned[1])
        return 1

    def _redo_remote(
        self, decoding: list[tuple[FileRecord, Redo]], summary: IndexSummary,
        report: Callable, total: int,
    ) -> int:  # fmt: skip
        """The files to decode again go out to `remote`; each batch that comes back is
        committed here, in one transaction. Returns how many files were updated."""
        owners = {rec.id: (rec, redo) for rec, redo in decoding}
        jobs = [_remake(rec, redo) for rec, redo in decoding if not self._crashes(rec, summary)]
        done = seen = 0
        report("embed", 0, total, "")

        def take(batch: list[Remade]) -> None:
            nonlocal done, seen
            plans: list[_Plan] = []
            vectors: list[np.ndarray | None] = []
            for remade in batch:
                rec, redo = owners[remade.file_id]
                planned = self._finish(rec, redo, remade, summary)
                if planned is not None:
                    plans.append(planned[0])
                    vectors += planned[1]
            if plans:
                self._commit(plans, vectors)
            done += len(plans)
            seen += len(batch)
            report("embed", seen, total, owners[batch[-1].file_id][0].path if batch else "")

        if jobs:
            assert self.remote is not None
            self.remote(jobs, summary, take)
        return done

    def _crashes(self, rec: FileRecord, summary: IndexSummary) -> bool:
        """A file in flight at the last run's crash that crashes a forked child again: it
        keeps its old vectors."""
        if rec.path_key not in self.suspects or self.probe is None:
            return False
        probe = self.probe
        if crashes_in_child(lambda: probe(rec.path), self.limit_s) is False:
            return False
        summary.note(f"kept the old vectors of {rec.path}: it {CRASH_REASON}")
        return True

    def _finish(
        self, rec: FileRecord, redo: Redo, remade: Remade, summary: IndexSummary
    ) -> tuple[_Plan, list[np.ndarray | None]] | None:
        """A decoded file's plan and every vector it needs (stored text of a text model
        switch at the same time embedded here); None when it keeps its old vectors."""
        if remade.kept is not None:
            summary.note(remade.kept)
            return None
        decoded = len(remade.new)
        plan = self._plan(rec, redo, summary, remade.new, remade.meta)
        try:
            vectors = remade.vectors + self._embed(plan.new[decoded:])
        except Exception as exc:
            summary.note(f"kept the old vectors of {rec.path}: {type(exc).__name__}: {exc}")
            return None
        return plan, vectors

    def _commit(self, plans: list[_Plan], vectors: list[np.ndarray | None]) -> None:
        models = {s: self.config.model_key(s) for s in ("text", "clip", "clap", "voice")}
        with self.catalog.transaction() as conn:
            for plan in plans:
                vecs, vectors = vectors[: len(plan.new)], vectors[len(plan.new) :]
                self.catalog.replace_segments(
                    conn, plan.file_id, plan.drop, plan.new, vecs, models, plan.meta
                )
                faults.point("reembed-file")
        faults.point("reembed-committed")

    def _plan(
        self,
        rec: FileRecord,
        redo: Redo,
        summary: IndexSummary,
        new: list[Segment] | None = None,
        meta: dict[str, str] | None = None,
    ) -> _Plan:
        """Which stored segments go and which new ones (`new`: decoded and embedded
        already, if the file was decoded again) replace them."""
        decode_for = {s for s in redo.spaces if s != "text"}
        new = [] if new is None else new
        meta = {} if meta is None else meta
        if redo.speech and "speech" not in meta:
            meta["speech"] = "off"
            meta["voice"] = "off"
        drop = [
            row
            for row in self.catalog.file_segments(rec.id)
            if row.space in decode_for
            or (redo.speech and row.kind in SPEECH_KINDS)
            or ("text" in redo.spaces and row.space == "text")
        ]
        if "text" in redo.spaces:  # re-embed kept passages and lines from their stored text
            new += [
                Segment(
                    space="text", kind=r.kind, start=r.start, end=r.end, text=r.text, loc=r.place()
                )
                for r in drop
                if r.space == "text" and r.text and not (redo.speech and r.kind == "speech")
            ]
        for seg in new:
            if seg.space == "text" and seg.payload is None:
                seg.payload = seg.text
        return _Plan(rec.id, [r.id for r in drop], new, meta)


def _remake(rec: FileRecord, redo: Redo) -> Remake:
    return Remake(rec.id, rec.path, {s for s in redo.spaces if s != "text"}, redo.speech, rec.size)


@dataclass
class _Plan:
    file_id: int
    drop: list[int]
    new: list[Segment]
    meta: dict[str, str]
