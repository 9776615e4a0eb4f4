"""The engine: open or create an index, and index(), search(), status(), remove() on it."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from searchengine import faults
from searchengine.config import IndexConfig, default_index_dir
from searchengine.crawler import ChangeSet, Entry, diff, display_path, walk
from searchengine.encoders.registry import SPACES, ModelRegistry
from searchengine.errors import DecodeError, ModelUnavailable, Skip, UserError
from searchengine.media import decode_file
from searchengine.store.catalog import Catalog, FileRecord, NewFile
from searchengine.store.vectors import VectorIndex
from searchengine.types import FILE_TYPES, Decoded, Hit, Segment

SPACES_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "image": ("clip",),
    "audio": ("clap", "text"),
    "video": ("clip", "clap", "text"),
}
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


class Engine:
    """An index folder: catalog.db (truth), one FAISS file per space (cache), config.json."""

    def __init__(
        self,
        index_dir: str | os.PathLike[str] | None = None,
        *,
        create: bool = False,
        models: dict[str, str] | None = None,
        clip_pretrained: str | None = None,
    ) -> None:
        self.dir = Path(index_dir).expanduser() if index_dir else default_index_dir()
        db = self.dir / "catalog.db"
        if not db.exists() and not create:
            raise UserError(f"no index at {self.dir} yet: run 'searchengine index PATH' first")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = IndexConfig.load(self.dir)
        changed = not (self.dir / "config.json").exists()
        for space, name in (models or {}).items():
            if name and self.config.models.get(space) != name:
                self.config.models[space] = name
                changed = True
        if clip_pretrained and clip_pretrained != self.config.clip_pretrained:
            self.config.clip_pretrained = clip_pretrained
            changed = True
        if changed:
            self.config.save(self.dir)
        self.catalog = Catalog(db)
        self.models = ModelRegistry(self.config)
        self._vectors: dict[str, VectorIndex] = {}

    # ---- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """One writer per index; readers never wait (SQLite WAL, atomic FAISS files)."""
        with open(self.dir / "lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"another searchengine process is writing to {self.dir}") from None
            yield

    def vectors(self, space: str) -> VectorIndex:
        """The space's FAISS index, caught up with the catalog."""
        vi = self._vectors.get(space)
        if vi is None:
            vi = self._vectors[space] = VectorIndex(self.dir, space)
            vi.sync(self.catalog)
        return vi

    def _sync_vectors(self) -> None:
        for space in SPACES:
            vi = self._vectors.get(space) or VectorIndex(self.dir, space)
            self._vectors[space] = vi
            vi.sync(self.catalog)
            vi.save()

    # ---- indexing ----------------------------------------------------------------------

    def index(
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
        with self._writer():
            entries: list[Entry] = []
            for entry in walk(roots, exclude=[str(self.dir)]):
                entries.append(entry)
                if len(entries) % 200 == 0:
                    report("scan", len(entries), 0, entry.path)
            report("scan", len(entries), len(entries), "")
            records = self.catalog.all_files()
            retry = self._retry_ids(records)
            cs = diff(
                entries,
                records,
                roots,
                retry_states=frozenset(),
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
            self._sync_vectors()
        summary.seconds = time.monotonic() - started
        return summary

    def _retry_ids(self, records: Sequence[FileRecord]) -> set[int]:
        """Files to process again though unchanged: pending ones whose model is now found,
        and ones whose vectors came from a model the config no longer names."""
        retry: set[int] = set()
        for fid, waiting in self.catalog.pending_waiting().items():
            if not waiting or any(self._resolvable(s) for s in waiting):
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
                self._sync_vectors()
                last_save = time.monotonic()

        for work in self._decoded(todo):
            if work.decoded is not None and _is_long(work.decoded):
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
            if _is_long(work.decoded):
                self._embed_long(work, summary)
            else:
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
                if note not in summary.notes:
                    summary.notes.append(note)
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
        if decoded.speech_source is not None:
            decoded.meta["speech"] = self.config.models.get("speech", "off")
        segs = list(decoded.segments)
        vecs = self._embed([(work, seg) for seg in segs], summary)
        try:
            for part in decoded.stream or ():
                vecs += self._embed([(work, seg) for seg in part], summary)
                segs += part
            if decoded.speech_source is not None:
                lines = self._transcribe(decoded.speech_source, summary)
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

    def _transcribe(
        self, source: Callable[[], Iterator[tuple[float, Any]]], summary: IndexSummary
    ) -> list[Segment]:
        """Transcript lines as `text`-space segments; no speech model is a note, not a state."""
        if self.config.models.get("speech", "off") == "off":
            return []
        try:
            transcriber = self.models.encoder("speech")
        except ModelUnavailable as exc:
            if str(exc) not in summary.notes:
                summary.notes.append(str(exc))
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

    # ---- queries -----------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        types: Sequence[str] | None = None,
        path: str | None = None,
    ) -> list[Hit]:
        """Files best matching a text query across every space, best moments first."""
        from searchengine.search import Query, run_query

        if not query or not query.strip():
            raise UserError("the query is empty")
        if k <= 0:
            raise UserError("-k must be at least 1")
        types = check_types(types)
        return run_query(self, Query(text=query.strip(), k=k, types=types, path=path))

    def similar(
        self,
        path: str | os.PathLike[str],
        k: int = 10,
        types: Sequence[str] | None = None,
        path_glob: str | None = None,
    ) -> list[Hit]:
        """Files like the given one (indexed or not), in the spaces that file lives in."""
        from searchengine.search import run_similar

        if k <= 0:
            raise UserError("-k must be at least 1")
        types = check_types(types)
        target = os.path.abspath(os.fspath(path))
        if not os.path.isfile(target):
            raise UserError(f"no such file: {display_path(target)}")
        record = self.catalog.file_by_key(os.fsencode(target))
        example: dict[str, np.ndarray] = {}
        if record is not None and record.state == "indexed":
            example = self.catalog.mean_vectors(record.id)
        if not example:
            example = self._embed_example(target)
        return run_similar(self, example, k, types, path_glob)

    def thumbnail(
        self, path: str | os.PathLike[str], out: str | os.PathLike[str], at: float = 0.0
    ) -> Path:
        """The frame of a hit at a moment, written to `out` (see module function)."""
        return thumbnail(path, out, at)

    def _embed_example(self, path: str) -> dict[str, np.ndarray]:
        """Decode and embed a file that is not (fully) in the index, to use as a query."""
        try:
            decoded = decode_file(path, self.config)
        except (Skip, DecodeError, OSError) as exc:
            raise UserError(f"cannot use {display_path(path)} as an example: {exc}") from None
        by_space: dict[str, list[Any]] = {}
        for seg in decoded.segments:
            by_space.setdefault(seg.space, []).append(seg.payload)
        out: dict[str, np.ndarray] = {}
        for space, payloads in by_space.items():
            try:
                rows = self.models.encoder(space).embed_items(payloads)
            except ModelUnavailable as exc:
                raise UserError(str(exc)) from None
            mean = rows.mean(axis=0)
            out[space] = mean / (np.linalg.norm(mean) or 1.0)
        return out

    # ---- maintenance -------------------------------------------------------------------

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Forget files (or everything under folders) without touching them on disk."""
        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        if not roots:
            raise UserError("give at least one file or folder to remove")
        from searchengine.crawler import under

        with self._writer():
            gone = [r for r in self.catalog.all_files() if under(os.fsdecode(r.path_key), roots)]
            if not gone:
                raise UserError("none of the given paths is in the index")
            with self.catalog.transaction() as conn:
                self.catalog.delete_files(conn, [r.id for r in gone])
            self._sync_vectors()
        return len(gone)

    def status(self) -> dict[str, Any]:
        """Counts per type and state, each space's model and vector count, and failures."""
        records = self.catalog.all_files()
        by_type: dict[str, dict[str, int]] = {}
        for rec in records:
            counts = by_type.setdefault(
                rec.type, {"indexed": 0, "pending": 0, "failed": 0, "skipped": 0}
            )
            counts[rec.state] = counts.get(rec.state, 0) + 1
        stored = self.catalog.space_models()
        spaces: dict[str, Any] = {}
        for space in SPACES:
            try:
                resolved = self.models.resolve(space)
                available, detail = True, f"{resolved.source}: {resolved.location}"
            except ModelUnavailable as exc:
                available, detail = False, str(exc)
            spaces[space] = {
                "model": self.config.model_key(space),
                "vectors": stored.get(space, ("", 0))[1],
                "available": available,
                "weights": detail,
            }
        problems = [
            {"path": r.path, "type": r.type, "state": r.state, "reason": r.reason}
            for r in records
            if r.state in ("failed", "skipped", "pending")
        ]
        return {
            "index": str(self.dir),
            "files": len(records),
            "types": by_type,
            "spaces": spaces,
            "failed": [p for p in problems if p["state"] == "failed"],
            "skipped": [p for p in problems if p["state"] == "skipped"],
            "pending": [p for p in problems if p["state"] == "pending"],
        }


def thumbnail(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    at: float = 0.0,
    max_side: int | None = None,
) -> Path:
    """Write the picture a hit shows: a video's frame at `at` seconds, or an image itself,
    upright, as JPEG or PNG (by `out`'s extension)."""
    from PIL import Image, ImageOps

    source = os.path.abspath(os.fspath(path))
    if not os.path.isfile(source):
        raise UserError(f"no such file: {display_path(source)}")
    if at < 0:
        raise UserError("--at must be zero or more seconds")
    with open(source, "rb") as fh:
        kind = _sniff_or_none(source, fh.read(8192))
    try:
        if kind == "video":
            from searchengine.media.video import frame_at

            image = frame_at(source, at)
        elif kind == "image":
            with Image.open(source) as im:
                image = ImageOps.exif_transpose(im).convert("RGB")
        else:
            raise UserError(f"{display_path(source)} is not an image or a video")
    except DecodeError as exc:
        raise UserError(f"cannot take a frame from {display_path(source)}: {exc}") from None
    if max_side:
        image.thumbnail((max_side, max_side))
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    return target


def _sniff_or_none(path: str, head: bytes) -> str | None:
    from searchengine.media.sniff import sniff

    try:
        return sniff(path, head)
    except Skip:
        return None


def _is_long(decoded: Decoded) -> bool:
    return decoded.stream is not None or decoded.speech_source is not None


def check_types(types: Sequence[str] | None) -> list[str] | None:
    if not types:
        return None
    out = []
    for t in types:
        t = t.strip().lower()
        if t not in FILE_TYPES:
            raise UserError(f"unknown type '{t}': choose from {', '.join(FILE_TYPES)}")
        out.append(t)
    return out


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
