"""Indexing: walk, diff with the catalog, decode ahead in threads, embed in batches per
space, and commit each batch in one transaction, so a kill loses at most one batch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from searchengine import calibration, faults
from searchengine.crawler import ChangeSet, Entry, diff, display_path, walk
from searchengine.encoders.registry import SPACES
from searchengine.errors import DecodeError, ModelUnavailable, Skip, UserError
from searchengine.media import decode_file
from searchengine.store.catalog import FileRecord, NewFile
from searchengine.types import Decoded, Segment

if TYPE_CHECKING:
    from pathlib import Path

    from searchengine.config import IndexConfig
    from searchengine.encoders.registry import ModelRegistry
    from searchengine.store.store import Store

BATCH_SEGMENTS = 256
BATCH_FILES = 32
PREFETCH = 8
SAVE_EVERY_S = 60.0

ProgressFn = Callable[[str, int, int, str], None]
"""progress(phase, done, total, current_path): phases are 'scan', 'hash', 'embed'."""


@dataclass
class IndexSummary:
    """What one `index` run changed; `notes` hold one-line hints such as missing models."""

    added: int = 0
    changed: int = 0
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    pending: int = 0
    skipped: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)

    def note(self, line: str) -> None:
        """Add a hint once, however many files hit it."""
        if line not in self.notes:
            self.notes.append(line)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["moves"] = [{"from": a, "to": b} for a, b in self.moves]
        return out


@dataclass
class _Work:
    """A file on its way through decode -> encode -> store."""

    entry: Entry
    record: FileRecord | None
    sha: str | None
    decoded: Decoded | None = None
    state: str = "indexed"
    reason: str | None = None
    file_type: str = "text"
    vectors: list[np.ndarray | None] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)


class Indexer:
    """One `index` run over a Store, with the index's models and settings. The caller
    holds the writer lock."""

    def __init__(
        self, store: Store, models: ModelRegistry, config: IndexConfig, index_dir: Path
    ) -> None:
        self.store = store
        self.catalog = store.catalog
        self.models = models
        self.config = config
        self.index_dir = index_dir

    def run(
        self, paths: Iterable[str | os.PathLike[str]], progress: ProgressFn | None = None
    ) -> IndexSummary:
        """Bring the index up to date with `paths`: embed new and changed files, follow moves,
        forget deleted files. Bad files are recorded with a reason; the run goes on."""
        started = time.monotonic()
        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        if not roots:
            raise UserError("give at least one file or folder to index")
        for root in roots:
            if not os.path.exists(root):
                raise UserError(f"no such file or folder: {display_path(root)}")
        report = progress or (lambda *_: None)
        summary = IndexSummary()
        entries: list[Entry] = []
        for entry in walk(roots, exclude=[str(self.index_dir)]):
            entries.append(entry)
            if len(entries) % 200 == 0:
                report("scan", len(entries), 0, entry.path)
        report("scan", len(entries), len(entries), "")
        records = self.catalog.all_files()
        retry = self._retry_ids()
        cs = diff(
            entries,
            records,
            roots,
            hasher=_counting_hasher(report, len(entries)),
        )
        # pending files whose model is now here, and files embedded by an old model
        cs.changed += [(r, e) for r, e in cs.unchanged + cs.touched if r.id in retry]
        cs.unchanged = [(r, e) for r, e in cs.unchanged if r.id not in retry]
        cs.touched = [(r, e) for r, e in cs.touched if r.id not in retry]
        self._apply_moves_and_deletes(cs, summary)
        summary.unchanged = len(cs.unchanged) + len(cs.touched)
        todo: list[tuple[Entry, FileRecord | None, str | None]] = [
            (e, None, cs.hashes.get(e.path)) for e in cs.added
        ] + [(e, r, cs.hashes.get(e.path) or r.sha) for r, e in cs.changed]
        summary.added = len(cs.added) + len(cs.copies)
        summary.changed = len(cs.changed)
        self._copy_duplicates(cs)
        self._process(todo, summary, report)
        self.store.sync(SPACES)
        calibration.refresh(self.store, self.models, self.config)
        self.models.export_query_encoders()
        summary.seconds = time.monotonic() - started
        return summary

    def _retry_ids(self) -> set[int]:
        """Files to process again though unchanged: pending ones whose model is now found,
        and ones whose vectors came from a model the config no longer names."""
        retry: set[int] = set()
        found = {space: self._resolvable(space) for space in SPACES}  # once, not per file
        for fid, waiting in self.catalog.pending_waiting().items():
            if not waiting or any(found.get(s, False) for s in waiting):
                retry.add(fid)
        for space in SPACES:
            retry |= self.catalog.stale_files(space, self.config.model_key(space))
        retry |= self.catalog.files_with_other_meta(
            ("audio", "video"), "speech", self.config.models.get("speech", "off")
        )
        return retry

    def _resolvable(self, space: str) -> bool:
        try:
            self.models.resolve(space)
        except ModelUnavailable:
            return False
        return True

    def _apply_moves_and_deletes(self, cs: ChangeSet, summary: IndexSummary) -> None:
        with self.catalog.transaction() as conn:
            for rec, entry in cs.moved:
                self.catalog.move_file(
                    conn, rec.id, entry.key, display_path(entry.path), entry.mtime_ns
                )
                summary.moves.append((rec.path, display_path(entry.path)))
            for rec, entry in cs.touched:
                self.catalog.touch_file(conn, rec.id, entry.mtime_ns)
            self.catalog.delete_files(conn, [r.id for r in cs.deleted])
        summary.moved = len(cs.moved)
        summary.deleted = len(cs.deleted)

    def _copy_duplicates(self, cs: ChangeSet) -> None:
        """An exact copy of an indexed file shares its twin's vectors: no embedding needed."""
        if not cs.copies:
            return
        metas = self.catalog.file_meta(r.id for r, _ in cs.copies)
        with self.catalog.transaction() as conn:
            for twin, entry in cs.copies:
                record = NewFile(
                    path_key=entry.key,
                    path=display_path(entry.path),
                    type=twin.type,
                    size=entry.size,
                    mtime_ns=entry.mtime_ns,
                    sha=twin.sha,
                    state=twin.state,
                    reason=twin.reason,
                    meta=metas.get(twin.id),
                )
                fid = self.catalog.write_file(conn, record, [], [], {})
                self.catalog.copy_segments(conn, twin.id, fid)

    def _process(
        self,
        todo: list[tuple[Entry, FileRecord | None, str | None]],
        summary: IndexSummary,
        report: ProgressFn,
    ) -> None:
        total = len(todo)
        done = 0
        last_save = time.monotonic()
        batch: list[_Work] = []
        report("embed", 0, total, "")

        def flush(items: list[_Work]) -> None:
            nonlocal done, last_save
            self._flush(items, summary)
            done += len(items)
            report("embed", done, total, display_path(items[-1].entry.path))
            if time.monotonic() - last_save > SAVE_EVERY_S:
                self.store.sync(SPACES, rebuild=False)
                last_save = time.monotonic()

        for work in self._decoded(todo):
            if work.decoded is not None and work.decoded.stream is not None:
                if batch:
                    flush(batch)
                    batch = []
                flush([work])  # long media commit alone: a kill loses one file's work at most
                continue
            batch.append(work)
            if (
                sum(len(w.decoded.segments) for w in batch if w.decoded) >= BATCH_SEGMENTS
                or len(batch) >= BATCH_FILES
            ):
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        report("embed", done, total, "")

    def _decoded(self, todo: list[tuple[Entry, FileRecord | None, str | None]]) -> Iterator[_Work]:
        """Decode in worker threads while the caller embeds: a bounded look-ahead window."""
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
            window: list[Future[_Work]] = []
            it = iter(todo)
            for item in it:
                window.append(pool.submit(self._decode_one, *item))
                if len(window) >= PREFETCH:
                    break
            while window:
                work = window.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    window.append(pool.submit(self._decode_one, *nxt))
                yield work

    def _decode_one(self, entry: Entry, record: FileRecord | None, sha: str | None) -> _Work:
        work = _Work(entry=entry, record=record, sha=sha)
        try:
            work.decoded = decode_file(entry.path, self.config)
            work.file_type = work.decoded.file_type
            if _is_short_media(work.decoded):
                # a short clip's windows are few: take them now, in this decode thread, so
                # they are embedded in one batch with other files rather than alone
                work.decoded.segments += [s for part in work.decoded.stream or () for s in part]
                work.decoded.stream = None
            if not work.decoded.segments and not _is_long(work.decoded):
                raise Skip("nothing to index in this file")
        except Skip as exc:
            work.state, work.reason, work.decoded = "skipped", str(exc), None
        except DecodeError as exc:
            work.state, work.reason, work.decoded = "failed", str(exc), None
        except FileNotFoundError:
            work.state, work.reason = "failed", "file vanished while indexing (deleted or moved)"
        except PermissionError:
            work.state, work.reason = "failed", "permission denied"
        except IsADirectoryError:
            work.state, work.reason = "failed", "is a folder"
        except OSError as exc:
            work.state, work.reason = "failed", f"read error: {exc.strerror or exc}"
        except Exception as exc:  # a decoder bug must cost one file, not the run
            work.state, work.reason = "failed", f"decoder error: {type(exc).__name__}: {exc}"
        if work.decoded is None and work.record is not None:
            work.file_type = work.record.type
        elif work.decoded is None:
            work.file_type = _guess_type(entry.path)
        return work

    def _flush(self, batch: list[_Work], summary: IndexSummary) -> None:
        """Embed a batch per space, then write every file of it in one transaction."""
        items: list[tuple[_Work, Segment]] = []
        for work in batch:
            if work.decoded is None:
                continue
            if work.decoded.stream is not None:
                self._embed_long(work, summary)
                continue
            try:
                work.decoded.segments += self._transcribe(work.decoded, summary)
            except Exception as exc:  # a bad sound track costs its speech, not the run
                work.state = "failed"
                work.reason = f"speech decode error: {type(exc).__name__}: {exc}"
            items += [(work, seg) for seg in work.decoded.segments]
        vectors = iter(self._embed(items, summary))  # one model call per space for the batch
        for work in batch:
            if work.decoded is not None and not work.vectors:
                work.vectors = [next(vectors) for _ in work.decoded.segments]
        models = {s: self.config.model_key(s) for s in SPACES}
        with self.catalog.transaction() as conn:
            for work in batch:
                meta = dict(work.decoded.meta) if work.decoded else {}
                if work.waiting:
                    meta["waiting"] = sorted(work.waiting)
                record = NewFile(
                    path_key=work.entry.key,
                    path=display_path(work.entry.path),
                    type=work.file_type,
                    size=work.entry.size,
                    mtime_ns=work.entry.mtime_ns,
                    sha=work.sha,
                    state=work.state,
                    reason=work.reason,
                    meta=meta,
                )
                segs = work.decoded.segments if work.decoded else []
                vecs = work.vectors if work.decoded else []
                self.catalog.write_file(conn, record, segs, vecs, models)
                faults.point("file-written")
                if work.state == "failed":
                    summary.failed += 1
                elif work.state == "pending":
                    summary.pending += 1
                elif work.state == "skipped":
                    summary.skipped += 1
        faults.point("batch-committed")

    def _embed(
        self, items: list[tuple[_Work, Segment]], summary: IndexSummary
    ) -> list[np.ndarray | None]:
        """Vectors for segments, one model call per space; a missing model leaves None and
        marks the owning files pending."""
        vectors: list[np.ndarray | None] = [None] * len(items)
        by_space: dict[str, list[int]] = {}
        for i, (_, seg) in enumerate(items):
            by_space.setdefault(seg.space, []).append(i)
        for space, idx in by_space.items():
            try:
                rows = self.models.encoder(space).embed_items([items[i][1].payload for i in idx])
            except ModelUnavailable as exc:
                note = str(exc)
                summary.note(note)
                for i in idx:
                    work = items[i][0]
                    work.waiting.add(space)
                    work.state, work.reason = "pending", note
                continue
            for i, row in zip(idx, rows, strict=True):
                vectors[i] = row
        for _, seg in items:
            seg.payload = None  # pixels and samples are never stored; free them now
        return vectors

    def _embed_long(self, work: _Work, summary: IndexSummary) -> None:
        """Consume a long file's segment stream part by part, then its speech, so memory is
        bounded by one part whatever the file's length."""
        decoded = work.decoded
        assert decoded is not None
        segs = list(decoded.segments)
        vecs = self._embed([(work, seg) for seg in segs], summary)
        try:
            for part in decoded.stream or ():
                vecs += self._embed([(work, seg) for seg in part], summary)
                segs += part
            lines = self._transcribe(decoded, summary)
            for i in range(0, len(lines), BATCH_SEGMENTS):
                part = lines[i : i + BATCH_SEGMENTS]
                vecs += self._embed([(work, seg) for seg in part], summary)
                segs += part
        except (DecodeError, OSError) as exc:
            work.state, work.reason = "failed", f"decode error: {exc}"
        except Exception as exc:  # one bad file must not end the run
            work.state, work.reason = "failed", f"decoder error: {type(exc).__name__}: {exc}"
        if not segs and work.state == "indexed":
            work.state, work.reason = "failed", "nothing could be decoded from this file"
        decoded.segments, decoded.stream, decoded.speech_source = segs, None, None
        work.vectors = vecs

    def _transcribe(self, decoded: Decoded, summary: IndexSummary) -> list[Segment]:
        """A file's transcript lines as `text`-space segments, once (the source is consumed);
        the speech setting is recorded so changing it later re-makes the file. No speech
        model is a note, not a state."""
        source, decoded.speech_source = decoded.speech_source, None
        if source is None:
            return []
        decoded.meta["speech"] = self.config.models.get("speech", "off")
        if decoded.meta["speech"] == "off":
            return []
        try:
            transcriber = self.models.encoder("speech")
        except ModelUnavailable as exc:
            summary.note(str(exc))
            return []
        return [
            Segment(
                space="text",
                kind="speech",
                start=round(line.start, 2),
                end=round(line.end, 2),
                text=line.text,
                payload=line.text,
            )
            for line in transcriber.transcribe(source())  # type: ignore[attr-defined]
        ]


SHORT_MEDIA_S = 30.0
"""Audio or video up to this long is decoded whole in the decode threads and batched with
other files; longer media streams part by part and is committed alone."""


def _is_short_media(decoded: Decoded) -> bool:
    duration = decoded.meta.get("duration")
    return decoded.stream is not None and duration is not None and duration <= SHORT_MEDIA_S


def _is_long(decoded: Decoded) -> bool:
    return decoded.stream is not None or decoded.speech_source is not None


def _guess_type(path: str) -> str:
    from searchengine.media.sniff import AUDIO_EXT, IMAGE_EXT, VIDEO_EXT

    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXT:
        return "image"
    if ext in AUDIO_EXT:
        return "audio"
    if ext in VIDEO_EXT:
        return "video"
    return "text"


def _counting_hasher(report: ProgressFn, total: int) -> Callable[[str], str]:
    from searchengine.crawler import file_hash

    count = 0

    def hasher(path: str) -> str:
        nonlocal count
        count += 1
        if count % 50 == 0:
            report("hash", count, total, path)
        return file_hash(path)

    return hasher
