"""Indexing: walk, diff with the catalog, decode ahead in threads, embed in batches per
space, and commit each batch in one transaction, so a kill loses at most one batch.

Nothing is lost to ordinary mistakes: a folder or root that cannot be read keeps what was
indexed under it (only a clean walk deletes); a file whose decoder raises, hangs past a time
limit, or crashed the process last time, or whose model call raises, is recorded as failed
with its reason and the run goes on."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from searchengine import calibration, faults
from searchengine.crawler import ChangeSet, Entry, diff, display_path, read_error, under, walk
from searchengine.deadline import DeadlineExceeded, iterate_with_deadline, ordered_with_deadline
from searchengine.encoders.registry import SPACES
from searchengine.errors import DecodeError, ModelUnavailable, Skip, UserError
from searchengine.geo import add_place
from searchengine.inflight import CRASH_REASON, STRIKES_TO_BLAME, Journal, crashes_in_child
from searchengine.media import decode_file
from searchengine.reembed import Redo, Reembedder, Remote
from searchengine.store.catalog import FileRecord, NewFile
from searchengine.types import Decoded, Segment
from searchengine.voices import refresh_speakers

if TYPE_CHECKING:
    from pathlib import Path

    from searchengine.config import IndexConfig
    from searchengine.encoders.registry import ModelRegistry
    from searchengine.store.store import Store

BATCH_SEGMENTS = 256
BATCH_FILES = 32
PREFETCH = 8
DECODE_WORKERS = 2
SAVE_EVERY_S = 60.0
DECODE_TIMEOUT_S = 120.0
"""Default time limit for decoding one file (or one part of a long one);
$SEARCHENGINE_DECODE_TIMEOUT (seconds) overrides it."""
MISSING_ROOT = "missing (unplugged drive or moved folder?)"
ATTEMPTS = 3
"""Runs that try a file failed for a reason that may pass (a time limit under load, a read
error, a model error) before it waits for a change of the file."""
EMPTY_ROOT = "empty (an unmounted drive?)"
NOTED_PATHS = 5
"""Unreadable paths named one by one in a run's notes; the rest are counted."""


def decode_timeout() -> float:
    raw = os.environ.get("SEARCHENGINE_DECODE_TIMEOUT", "")
    if not raw:
        return DECODE_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise UserError(f"SEARCHENGINE_DECODE_TIMEOUT wants seconds above 0, not '{raw}'")
    return value


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
    reembedded: int = 0  # unchanged files whose stale space or speech was made again
    unreachable: int = 0
    """Files kept as they were because they, a folder above them or their root could not be
    read this time (see `unreachable_paths`)."""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)
    unreachable_paths: list[tuple[str, str, int]] = field(default_factory=list)
    """(path that could not be read, why, indexed files kept under it)."""
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    """(state, path, reason) of every file this run left failed, skipped or pending."""

    def note(self, line: str) -> None:
        """Add a hint once, however many files hit it."""
        if line not in self.notes:
            self.notes.append(line)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["moves"] = [{"from": a, "to": b} for a, b in self.moves]
        out["unreachable_paths"] = [
            {"path": p, "reason": why, "files": n} for p, why, n in self.unreachable_paths
        ]
        out["problems"] = [{"state": st, "path": p, "reason": why} for st, p, why in self.problems]
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
    embed_failed: bool = False  # its segments are not stored
    keep: tuple[str, str] | None = None  # (path, why): unreadable now, old entry kept
    transient: bool = False  # failed for a reason that may pass: retried on later runs


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
        self.decode_timeout_s = decode_timeout()
        self.journal: Journal | None = None
        self.attempts: dict[int, int] = {}  # file id -> runs that failed it, for retries
        self.retry_next = 0  # files failed now that the next run tries again

    def run(
        self,
        paths: Iterable[str | os.PathLike[str]],
        progress: ProgressFn | None = None,
        *,
        prune: bool = False,
    ) -> IndexSummary:
        """Bring the index up to date with `paths`: embed new and changed files, follow moves,
        forget deleted files. Bad files are recorded with a reason; the run goes on.

        What cannot be read (a folder, a file, a missing root) keeps its entries; `prune`
        forgets the entries under roots that no longer exist."""
        started = time.monotonic()
        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        if not roots:
            raise UserError("give at least one file or folder to index")
        records = self.catalog.all_files()
        missing = _missing_roots(roots, records)
        report = progress or (lambda *_: None)
        summary = IndexSummary()
        entries: list[Entry] = []
        unreadable: dict[str, str] = {}
        present = [r for r in roots if r not in missing]
        for entry in walk(present, exclude=[str(self.index_dir)], on_error=unreadable.__setitem__):
            entries.append(entry)
            if len(entries) % 200 == 0:
                report("scan", len(entries), 0, entry.path)
        report("scan", len(entries), len(entries), "")
        empty = _empty_roots(present, entries, records, unreadable)
        missing.update(empty)
        if not prune:
            unreadable.update(dict.fromkeys(missing, MISSING_ROOT))
            unreadable.update(dict.fromkeys(empty, EMPTY_ROOT))
        retry, redo = self._retry()
        cs = diff(
            entries,
            records,
            roots,
            hasher=_counting_hasher(report, len(entries)),
            unreachable=unreadable,
        )
        # pending files whose model is now here, and files embedded by an old model
        cs.changed += [(r, e) for r, e in cs.unchanged + cs.touched if r.id in retry]
        cs.unchanged = [(r, e) for r, e in cs.unchanged if r.id not in retry]
        cs.touched = [(r, e) for r, e in cs.touched if r.id not in retry]
        with Journal(self.index_dir) as journal:
            self.journal = journal
            try:
                self._apply_moves_and_deletes(cs, summary)
                _note_unreachable(cs, unreadable, missing, prune, summary)
                summary.unchanged = len(cs.unchanged) + len(cs.touched)
                todo: list[tuple[Entry, FileRecord | None, str | None]] = [
                    (e, None, cs.hashes.get(e.path)) for e in cs.added
                ] + [(e, r, cs.hashes.get(e.path) or r.sha) for r, e in cs.changed]
                summary.added = len(cs.added) + len(cs.copies)
                summary.changed = len(cs.changed)
                self._copy_duplicates(cs)
                todo = self._skip_crashers(todo, journal.left_over, summary)
                self._process(todo, summary, report)
                # every stale file, not only those under the roots given: a model is the
                # index's, and a half-switched space would mix vector sizes
                done_now = {r.id for r, _ in cs.changed} | {r.id for r in cs.deleted}
                summary.reembedded = Reembedder(
                    self.store,
                    self.models,
                    self.config,
                    self._transcribe,
                    in_flight=self._journaled,
                    limit_s=self.decode_timeout_s,
                    suspects=journal.left_over,
                    probe=self._probe,
                    remote=self._remote_redo(),
                ).run({f: r for f, r in redo.items() if f not in done_now}, summary, report)
            finally:
                self.journal = None
        if self.retry_next:
            summary.note(
                f"{self.retry_next} files failed for a reason that may pass (a time limit, a "
                f"read or model error): the next runs try them again, up to {ATTEMPTS} times"
            )
        self.store.sync(SPACES)
        self._record_identities()
        calibration.refresh(self.store, self.models, self.config)
        refresh_speakers(self.catalog, self.config)
        self._export_query_encoders()
        summary.seconds = time.monotonic() - started
        return summary

    def _remote_redo(self) -> Remote | None:
        """Where files to decode again for a model change go: None, here (a cluster run
        sends them to its workers, cluster.py)."""
        return None

    def _retry(self) -> tuple[set[int], dict[int, Redo]]:
        """Files to process again though unchanged on disk: pending ones whose model is now
        found (whole), and ones whose vectors came from a model the config no longer names
        or whose speech setting changed (only that part, see reembed.py)."""
        self.attempts = self.catalog.failed_to_retry(ATTEMPTS)
        self.retry_next = 0
        full: set[int] = set(self.attempts)
        pending = self.catalog.pending_waiting()
        waited = {s for spaces in pending.values() for s in spaces}
        # resolving a space may import its model library (open_clip brings torch): only
        # for spaces that pending files wait for, once each
        found = {space: self._resolvable(space) for space in waited}
        for fid, waiting in pending.items():
            if not waiting or any(found.get(s, False) for s in waiting):
                full.add(fid)
        partial: dict[int, Redo] = {}
        for space in SPACES:
            key = self.config.model_key(space)
            stale = self.catalog.stale_files(space, key)
            if stale and self._same_weights_renamed(space, key):
                stale = self.catalog.stale_files(space, key)
            for fid in stale:
                partial.setdefault(fid, Redo()).spaces.add(space)
        for key in ("speech", "voice"):  # the voice part is made with the transcript
            for fid in self.catalog.files_with_other_meta(
                ("audio", "video"), key, self.config.models.get(key, "off")
            ):
                partial.setdefault(fid, Redo()).speech = True
        # files read with another OCR engine. Where the index's engine is not installed
        # (an index moved to another machine) nothing is re-read: text read before stays
        from searchengine.media.image import ocr_setting

        ocr = self.config.models.get("ocr", "off")
        if ocr_setting(self.config) == ocr:
            full |= self.catalog.files_with_other_meta(("image", "video", "text"), "ocr", ocr)
        for fid in self.catalog.stale_files("voice", self.config.model_key("voice")):
            partial.setdefault(fid, Redo()).speech = True
        return full, {fid: r for fid, r in partial.items() if fid not in full}

    def _same_weights_renamed(self, space: str, key: str) -> bool:
        """A model is its weights, not the name that found them: vectors made under an old
        name whose recorded identity is the current weights' are renamed, not re-embedded
        (a checkpoint moved to another folder)."""
        known = self.catalog.model_identities(space)
        old = [k for k in self.catalog.models_in_use(space) if k != key and k in known]
        if not old:
            return False
        current = self._identity(space)
        if current is None:
            return False
        same = [k for k in old if known[k] == current]
        if same:
            self.catalog.rename_model(space, same, key)
            self.catalog.record_model_identity(space, key, current)
        return bool(same)

    def _identity(self, space: str) -> str | None:
        """The content hash of the space's configured weights; None when not found."""
        try:
            return self.models.model_identity(space, self.models.resolve(space))
        except (ModelUnavailable, OSError, ValueError):
            return None

    def _record_identities(self) -> None:
        """Remember the content identity of each model that embedded something this run,
        so a later rename of its files is recognised."""
        for space in SPACES:
            ident = self._identity(space) if self.models.loaded(space) else None
            if ident is not None:
                self.catalog.record_model_identity(space, self.config.model_key(space), ident)
        if self.models.query_cache is not None:
            self.models.query_cache.memo.save()

    def _export_query_encoders(self) -> None:
        """Light query encoders for the spaces that hold vectors and have none yet (a check
        that needs no model library when the export is there)."""
        wanted = [
            s for s in SPACES if len(self.store.cache(s)) and self.models.query_export(s) is None
        ]
        if wanted:
            self.models.export_query_encoders(wanted)

    def _resolvable(self, space: str) -> bool:
        try:
            self.models.resolve(space)
        except ModelUnavailable:
            return False
        return True

    def _apply_moves_and_deletes(self, cs: ChangeSet, summary: IndexSummary) -> None:
        """Moves, touches and deletions in one transaction; files the walk could not reach
        are marked as such (for status), and those reached again are unmarked."""
        marked = self.catalog.unreachable()
        marks = {r.id: (at, why) for r, at, why in cs.unreachable}
        seen = [r for r, _ in cs.unchanged + cs.touched + cs.changed + cs.moved]
        clear = [r.id for r in seen if r.id in marked]
        with self.catalog.transaction() as conn:
            self.catalog.mark_unreachable(conn, marks, clear)
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
                meta = dict(metas.get(twin.id) or {})
                meta.pop("unreachable", None)  # the twin's state of reach is not the copy's
                record = NewFile(
                    path_key=entry.key,
                    path=display_path(entry.path),
                    type=twin.type,
                    size=entry.size,
                    mtime_ns=entry.mtime_ns,
                    sha=twin.sha,
                    state=twin.state,
                    reason=twin.reason,
                    meta=meta,
                )
                fid = self.catalog.write_file(conn, record, [], [], {})
                self.catalog.copy_segments(conn, twin.id, fid)
                faults.point("duplicate-copied")

    def _skip_crashers(
        self,
        todo: list[tuple[Entry, FileRecord | None, str | None]],
        suspects: dict[bytes, int],
        summary: IndexSummary,
    ) -> list[tuple[Entry, FileRecord | None, str | None]]:
        """Files the last run left in flight are suspects: one that crashes a forked child
        (or was in flight at two crashes in a row) is recorded as having crashed the
        indexer and skipped until it changes; the others are indexed as usual."""
        if not suspects:
            return todo
        keep: list[tuple[Entry, FileRecord | None, str | None]] = []
        blamed: list[_Work] = []
        for entry, record, sha in todo:
            strikes = suspects.get(entry.key)
            if strikes is None:
                keep.append((entry, record, sha))
                continue
            if strikes < STRIKES_TO_BLAME:
                probe = functools.partial(self._probe, entry.path)
                crashed = crashes_in_child(probe, self.decode_timeout_s)
                if crashed is not True:
                    keep.append((entry, record, sha))
                    continue
            work = _Work(entry=entry, record=record, sha=sha, state="failed", reason=CRASH_REASON)
            work.file_type = record.type if record is not None else _guess_type(entry.path)
            blamed.append(work)
            summary.note(f"{display_path(entry.path)} {CRASH_REASON}: skipped until it changes")
        if blamed:
            self._flush(blamed, summary)
        return keep

    def _probe(self, path: str) -> None:
        """Every decoding step a file goes through, with nothing kept: run in a child."""
        decoded = decode_file(path, self.config)
        for _ in decoded.stream or ():
            pass
        if decoded.speech_source is not None:
            for _ in decoded.speech_source():
                pass

    def _in_flight(self, entry: Entry) -> AbstractContextManager[None]:
        return self._journaled(entry.key)

    @contextmanager
    def _journaled(self, key: bytes) -> Iterator[None]:
        """Journal a file while its decoding code runs, so a crash there is traced to it."""
        journal = self.journal
        if journal is not None:
            journal.add(key)
        try:
            yield
        finally:
            if journal is not None:
                journal.discard(key)

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
        """Decode in worker threads while the caller embeds: a bounded look-ahead window.
        A file still decoding after the time limit is failed and left behind."""
        return ordered_with_deadline(
            lambda item: self._decode_one(*item),
            todo,
            workers=DECODE_WORKERS,
            window=PREFETCH,
            limit_s=self.decode_timeout_s,
            on_timeout=self._timed_out,
            name="decode",
        )

    def _timed_out(self, item: tuple[Entry, FileRecord | None, str | None]) -> _Work:
        entry, record, sha = item
        if self.journal is not None:  # a hang is no crash: its thread may still end
            self.journal.discard(entry.key)
        work = _Work(entry=entry, record=record, sha=sha, state="failed", transient=True)
        work.reason = self._too_slow()
        work.file_type = record.type if record is not None else _guess_type(entry.path)
        return work

    def _too_slow(self) -> str:
        return f"decoding took longer than {self.decode_timeout_s:g} s"

    def _decode_one(self, entry: Entry, record: FileRecord | None, sha: str | None) -> _Work:
        with self._in_flight(entry):
            faults.point("decode-started")
            return self._decode_in_flight(entry, record, sha)

    def _decode_in_flight(self, entry: Entry, record: FileRecord | None, sha: str | None) -> _Work:
        work = _Work(entry=entry, record=record, sha=sha)
        try:
            work.decoded = decode_file(entry.path, self.config)
            work.file_type = work.decoded.file_type
            add_place(work.decoded.meta)  # GPS -> place names (searchengine/geo.py)
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
        except PermissionError as exc:
            work.state, work.reason = "failed", "permission denied"
            work.keep = (entry.path, read_error(exc))
        except IsADirectoryError:
            work.state, work.reason = "failed", "is a folder"
        except OSError as exc:
            work.state, work.reason = "failed", f"read error: {exc.strerror or exc}"
            work.keep = (entry.path, read_error(exc))
            work.transient = True
        except Exception as exc:  # a decoder bug must cost one file, not the run
            work.state, work.reason = "failed", f"decoder error: {type(exc).__name__}: {exc}"
        if work.record is None:
            work.keep = None  # nothing indexed before: record the failure
        if work.decoded is None and work.record is not None:
            work.file_type = work.record.type
        elif work.decoded is None:
            work.file_type = _guess_type(entry.path)
        return work

    def _flush(self, batch: list[_Work], summary: IndexSummary) -> None:
        """Embed a batch per space, then write every file of it in one transaction."""
        self._embed_batch(batch, summary)
        self._commit(batch, summary)

    def _embed_batch(self, batch: list[_Work], summary: IndexSummary) -> None:
        """Vectors for every decoded file of a batch (long media part by part, speech
        transcribed); no catalog access, so a cluster worker runs it too (cluster.py)."""
        items: list[tuple[_Work, Segment]] = []
        for work in batch:
            if work.decoded is None:
                continue
            if work.decoded.stream is not None:
                with self._in_flight(work.entry):
                    self._embed_long(work, summary)
                continue
            try:
                if work.decoded.speech_source is not None:
                    with self._in_flight(work.entry):
                        work.decoded.segments += self._transcribe(work.decoded, summary)
            except Exception as exc:  # a bad sound track costs its speech, not the run
                work.state = "failed"
                work.reason = f"speech decode error: {type(exc).__name__}: {exc}"
            items += [(work, seg) for seg in work.decoded.segments]
        vectors = iter(self._embed(items, summary))  # one model call per space for the batch
        for work in batch:
            if work.decoded is not None and not work.vectors:
                work.vectors = [next(vectors) for _ in work.decoded.segments]

    def _commit(self, batch: list[_Work], summary: IndexSummary) -> None:
        """Write every file of an embedded batch in one transaction (the single writer)."""
        models = {s: self.config.model_key(s) for s in (*SPACES, "voice")}
        with self.catalog.transaction() as conn:
            for work in batch:
                if work.keep is not None:  # unreadable now: the old entry stays as it was
                    self.catalog.mark_unreachable(conn, {work.record.id: work.keep})  # type: ignore[union-attr]
                    summary.unreachable += 1
                    summary.note(
                        f"could not read {display_path(work.keep[0])} ({work.keep[1]}): "
                        "its indexed version is kept"
                    )
                    continue
                meta = dict(work.decoded.meta) if work.decoded else {}
                if work.waiting:
                    meta["waiting"] = sorted(work.waiting)
                if work.state == "failed" and work.transient:
                    tries = self.attempts.get(work.record.id, 0) if work.record else 0
                    meta["attempts"] = tries + 1
                    if tries + 1 < ATTEMPTS:
                        self.retry_next += 1
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
                stored = work.decoded is not None and not work.embed_failed
                segs = work.decoded.segments if stored else []  # type: ignore[union-attr]
                vecs = work.vectors if stored else []
                self.catalog.write_file(conn, record, segs, vecs, models)
                faults.point("file-written")
                if work.state in ("failed", "pending", "skipped"):
                    summary.problems.append((work.state, record.path, work.reason or ""))
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
                _check_rows(rows, len(idx))
            except ModelUnavailable as exc:
                self._wait_for_model(space, [items[i][0] for i in idx], str(exc), summary)
                continue
            except Exception:  # find the file(s) the model chokes on; keep the rest
                for i, row in self._embed_each(space, items, idx, summary).items():
                    vectors[i] = row
                continue
            for i, row in zip(idx, rows, strict=True):
                vectors[i] = row
        for _, seg in items:
            seg.payload = None  # pixels and samples are never stored; free them now
        return vectors

    def _embed_each(
        self, space: str, items: list[tuple[_Work, Segment]], idx: list[int], summary: IndexSummary
    ) -> dict[int, np.ndarray]:
        """A batch's model call failed: embed each file's segments alone, so that only the
        files the model fails on are marked failed ("embedding error: ...")."""
        by_file: dict[int, list[int]] = {}
        for i in idx:
            by_file.setdefault(id(items[i][0]), []).append(i)
        out: dict[int, np.ndarray] = {}
        for group in by_file.values():
            work = items[group[0]][0]
            try:
                rows = self.models.encoder(space).embed_items([items[i][1].payload for i in group])
                _check_rows(rows, len(group))
            except ModelUnavailable as exc:
                self._wait_for_model(space, [work], str(exc), summary)
                continue
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                work.state = "failed"
                work.reason = f"embedding error: {type(exc).__name__}: {first}".rstrip(": ")
                work.embed_failed = True
                work.transient = not isinstance(exc, BadVectors)
                continue
            out.update(zip(group, rows, strict=True))
        return out

    def _wait_for_model(
        self, space: str, works: list[_Work], note: str, summary: IndexSummary
    ) -> None:
        summary.note(note)
        for work in works:
            work.waiting.add(space)
            work.state, work.reason = "pending", note

    def _embed_long(self, work: _Work, summary: IndexSummary) -> None:
        """Consume a long file's segment stream part by part, then its speech, so memory is
        bounded by one part whatever the file's length."""
        decoded = work.decoded
        assert decoded is not None
        segs = list(decoded.segments)
        vecs = self._embed([(work, seg) for seg in segs], summary)
        try:
            for part in iterate_with_deadline(decoded.stream or (), self.decode_timeout_s):
                vecs += self._embed([(work, seg) for seg in part], summary)
                segs += part
                faults.point("stream-part")
            for part in self._speech_parts(decoded, summary):  # one ~30 s piece at a time
                vecs += self._embed([(work, seg) for seg in part], summary)
                segs += part
        except DeadlineExceeded:
            work.state, work.reason, work.transient = "failed", self._too_slow(), True
        except (DecodeError, OSError) as exc:
            work.state, work.reason = "failed", f"decode error: {exc}"
        except Exception as exc:  # one bad file must not end the run
            work.state, work.reason = "failed", f"decoder error: {type(exc).__name__}: {exc}"
        if not segs and work.state == "indexed":
            work.state, work.reason = "failed", "nothing could be decoded from this file"
        decoded.segments, decoded.stream, decoded.speech_source = segs, None, None
        work.vectors = vecs

    def _transcribe(self, decoded: Decoded, summary: IndexSummary) -> list[Segment]:
        """A file's transcript lines (`text` space) and voice pieces (`voice` space), all at
        once; long files go through `_speech_parts` instead."""
        return [seg for part in self._speech_parts(decoded, summary) for seg in part]

    def _speech_parts(self, decoded: Decoded, summary: IndexSummary) -> Iterator[list[Segment]]:
        """Per ~30 s piece of the sound track: its transcript lines as `text` segments and
        its stretches of speech as `voice` segments (searchengine/encoders/voice.py), so
        memory is bounded by one piece. The source is consumed once; the speech and voice
        settings are recorded so changing either later re-makes the file. No speech model
        is a note, not a state; a missing voice model makes the file wait (pending)."""
        source, decoded.speech_source = decoded.speech_source, None
        if source is None:
            return
        decoded.meta["speech"] = self.config.models.get("speech", "off")
        decoded.meta["voice"] = self.config.models.get("voice", "off")
        transcriber = None
        if decoded.meta["speech"] != "off":
            try:
                transcriber = self.models.encoder("speech")
            except ModelUnavailable as exc:
                summary.note(str(exc))
        voice_on = decoded.meta["voice"] != "off"
        if transcriber is None and not voice_on:
            return
        from searchengine.encoders.voice import voice_pieces

        for offset, pcm in source():
            part = [
                Segment(
                    space="text",
                    kind="speech",
                    start=round(line.start, 2),
                    end=round(line.end, 2),
                    text=line.text,
                    payload=line.text,
                )
                for line in (
                    transcriber.transcribe_pcm(pcm, float(offset))  # type: ignore[attr-defined]
                    if transcriber is not None
                    else ()
                )
            ]
            if voice_on:
                part += [
                    Segment(space="voice", kind="voice", start=a, end=b, payload=piece)
                    for a, b, piece in voice_pieces(pcm, float(offset))
                ]
            yield part


def _missing_roots(roots: list[str], records: list[FileRecord]) -> dict[str, int]:
    """Roots that are not there (an unplugged drive, a moved folder) -> how many indexed
    files lie under them. A missing root the index holds nothing under is a mistake."""
    missing: dict[str, int] = {}
    for root in roots:
        try:
            os.stat(root)
            continue
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError:
            continue  # there, but unreadable: the walk reports it
        held = sum(1 for r in records if under(os.fsdecode(r.path_key), [root]))
        if not held:
            raise UserError(f"no such file or folder: {display_path(root)}")
        missing[root] = held
    return missing


def _empty_roots(
    roots: list[str], entries: list[Entry], records: list[FileRecord], unreadable: dict[str, str]
) -> dict[str, int]:
    """Folders given as roots that hold nothing now but had indexed files -> how many. An
    unplugged drive often leaves its empty mount folder behind: that is no deletion."""
    folders = [r for r in roots if os.path.isdir(r) and r not in unreadable]
    if not folders:
        return {}
    seen: set[str] = set()
    for entry in entries:
        if len(seen) == len(folders):
            break
        seen.update(r for r in folders if r not in seen and under(entry.path, [r]))
    empty: dict[str, int] = {}
    for root in folders:
        if root in seen:
            continue
        held = sum(1 for r in records if under(os.fsdecode(r.path_key), [root]))
        if held:
            empty[root] = held
    return empty


def _note_unreachable(
    cs: ChangeSet,
    unreadable: dict[str, str],
    missing: dict[str, int],
    prune: bool,
    summary: IndexSummary,
) -> None:
    """Counts, paths and one line per missing root or unreadable path for the summary."""
    kept: dict[str, int] = {}
    for _, at, _ in cs.unreachable:
        kept[at] = kept.get(at, 0) + 1
    summary.unreachable += len(cs.unreachable)
    summary.unreachable_paths = [(p, why, kept.get(p, 0)) for p, why in unreadable.items()]
    for root, held in missing.items():
        name = display_path(root)
        if prune:
            gone = sum(1 for r in cs.deleted if under(os.fsdecode(r.path_key), [root]))
            how = "empty" if os.path.isdir(root) else "missing"
            summary.note(f"{name} is {how}: forgot the {gone} files indexed under it")
        else:
            summary.note(
                f"{name} is {unreadable.get(root, MISSING_ROOT)}: its {held} indexed files "
                f"are kept ('searchengine index --prune {name}' forgets them)"
            )
    others = [(p, why) for p, why in unreadable.items() if p not in missing]
    for path, why in others[:NOTED_PATHS]:
        held = f": its {kept[path]} indexed files are kept" if kept.get(path) else ""
        summary.note(f"could not read {display_path(path)} ({why}){held}")
    if len(others) > NOTED_PATHS:
        summary.note(
            f"... and {len(others) - NOTED_PATHS} more paths could not be read "
            "('searchengine index --json' lists them)"
        )


def _check_rows(rows: np.ndarray, expected: int) -> None:
    """A model answer that cannot be stored is an embedding error, not a stored vector."""
    if len(rows) != expected:
        raise BadVectors(f"the model returned {len(rows)} vectors for {expected} inputs")
    if not np.isfinite(np.asarray(rows, dtype=np.float32)).all():
        raise BadVectors("the model returned vectors that are not finite")


class BadVectors(ValueError):
    """The model answered, wrongly, for this input: trying again gives the same answer."""


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
