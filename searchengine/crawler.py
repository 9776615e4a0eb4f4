"""Walking folders and turning what is on disk into a change set against the catalog."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from searchengine.store.catalog import FileRecord

JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini", "__pycache__", "node_modules"}
IGNORE_FILE = ".searchignore"


@dataclass(slots=True)
class Entry:
    """A regular file found on disk."""

    path: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> bytes:
        return os.fsencode(self.path)


@dataclass
class ChangeSet:
    """What a walk found relative to the catalog; `moved` pairs a record with its new entry."""

    added: list[Entry] = field(default_factory=list)
    changed: list[tuple[FileRecord, Entry]] = field(default_factory=list)
    moved: list[tuple[FileRecord, Entry]] = field(default_factory=list)
    copies: list[tuple[FileRecord, Entry]] = field(default_factory=list)
    touched: list[tuple[FileRecord, Entry]] = field(default_factory=list)
    deleted: list[FileRecord] = field(default_factory=list)
    unchanged: list[tuple[FileRecord, Entry]] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)  # path -> sha of hashed entries
    unreachable: list[tuple[FileRecord, str, str]] = field(default_factory=list)
    """Records not seen because a folder, file or root above them could not be read:
    (record, the path that failed, why). They are kept, never deleted."""


def display_path(path: str) -> str:
    """A printable form of a path whose bytes may not be valid UTF-8."""
    return os.fsencode(path).decode("utf-8", errors="replace")


def _ignore_patterns(folder: str) -> list[str]:
    try:
        with open(os.path.join(folder, IGNORE_FILE), encoding="utf-8", errors="replace") as fh:
            return [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError:
        return []


def _ignored(name: str, rel: str, patterns: Iterable[str]) -> bool:
    for pat in patterns:
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(rel, pat.lstrip("/")):
            return True
    return False


def is_junk(name: str) -> bool:
    return name in JUNK_NAMES or name.startswith("._") or name.startswith(".")


def read_error(exc: OSError) -> str:
    """Why a path could not be read, in a few words ("permission denied")."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or type(exc).__name__).lower()


def walk(
    roots: Iterable[str],
    exclude: Iterable[str] = (),
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[Entry]:
    """Yield regular files under `roots`: no junk, no ignored paths, no symlink loops.

    Symlinks are followed, but every folder and file is visited once by (device, inode),
    so a link back up the tree or a second name for the same file is not walked twice.
    `on_error(path, reason)` hears of every file or folder that exists but could not be
    read: what was indexed under it is then unknown, not deleted. A path that vanished
    (or a dangling link) is simply not there, and is not reported.
    """
    excluded = {os.path.realpath(p) for p in exclude}
    seen: set[tuple[int, int]] = set()

    def failed(path: str, exc: OSError) -> None:
        if on_error and not isinstance(exc, FileNotFoundError | NotADirectoryError):
            on_error(path, read_error(exc))

    def visit_dir(folder: str, patterns: list[tuple[str, str]]) -> Iterator[Entry]:
        try:
            st = os.stat(folder)
        except OSError as exc:
            failed(folder, exc)
            return
        if (st.st_dev, st.st_ino) in seen or os.path.realpath(folder) in excluded:
            return
        seen.add((st.st_dev, st.st_ino))
        own = _ignore_patterns(folder)
        patterns = patterns + [(folder, p) for p in own]
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            failed(folder, exc)
            return
        for child in children:
            if is_junk(child.name) or child.name == IGNORE_FILE:
                continue
            if any(
                _ignored(child.name, os.path.relpath(child.path, base), [p]) for base, p in patterns
            ):
                continue
            try:
                is_dir = child.is_dir()  # follows symlinks
            except OSError as exc:
                failed(child.path, exc)
                continue
            if is_dir:
                yield from visit_dir(child.path, patterns)
            else:
                entry = visit_file(child.path)
                if entry is not None:
                    yield entry

    def visit_file(path: str) -> Entry | None:
        try:
            st = os.stat(path)
        except OSError as exc:  # dangling symlink, vanished file: not reported
            failed(path, exc)
            return None
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
            return None
        seen.add((st.st_dev, st.st_ino))
        return Entry(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns)

    for root in roots:
        root = os.path.abspath(root)
        if os.path.isdir(root):
            yield from visit_dir(root, [])
        else:
            entry = visit_file(root)
            if entry is not None:
                yield entry


def file_hash(path: str) -> str:
    """BLAKE2b of the content, streamed: the identity that survives moves and renames."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def under(path: str, roots: Iterable[str]) -> bool:
    for root in roots:
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def blocked_by(path: str, unreachable: Mapping[str, str]) -> str | None:
    """The path itself or its nearest folder that could not be read, if any."""
    while True:
        if path in unreachable:
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def diff(
    entries: Iterable[Entry],
    records: Iterable[FileRecord],
    roots: Iterable[str],
    hasher: Callable[[str], str] = file_hash,
    unreachable: Mapping[str, str] | None = None,
) -> ChangeSet:
    """Compare a walk with the catalog. Only new or changed files are hashed; a changed
    (size, mtime) with the same content is only `touched`.

    `unreachable` maps paths the walk could not read to the reason: records under them
    were not seen, but that is no proof they are gone, so they are kept (`unreachable`),
    never deleted. Only a clean walk of a folder deletes what it no longer holds."""
    unreachable = unreachable or {}
    roots = [os.path.abspath(r) for r in roots]
    by_key = {r.path_key: r for r in records}
    cs = ChangeSet()
    seen_keys: set[bytes] = set()
    fresh: list[Entry] = []
    for entry in entries:
        key = entry.key
        seen_keys.add(key)
        rec = by_key.get(key)
        if rec is None:
            fresh.append(entry)
        elif rec.size == entry.size and rec.mtime_ns == entry.mtime_ns:
            cs.unchanged.append((rec, entry))
        else:
            sha = _safe_hash(hasher, entry.path)
            if sha is not None:
                cs.hashes[entry.path] = sha
            if sha is not None and sha == rec.sha:
                cs.touched.append((rec, entry))
            else:
                cs.changed.append((rec, entry))
    gone: list[FileRecord] = []
    for r in by_key.values():
        if r.path_key in seen_keys or not under(os.fsdecode(r.path_key), roots):
            continue
        at = blocked_by(os.fsdecode(r.path_key), unreachable) if unreachable else None
        if at is None:
            gone.append(r)
        else:
            cs.unreachable.append((r, at, unreachable[at]))
    gone_by_sha: dict[str, list[FileRecord]] = {}
    for r in gone:
        if r.sha:
            gone_by_sha.setdefault(r.sha, []).append(r)
    present_by_sha: dict[str, FileRecord] = {}
    for r in by_key.values():
        if r.sha and r.path_key in seen_keys and r.state == "indexed":
            present_by_sha.setdefault(r.sha, r)
    for r, _, _ in cs.unreachable:  # kept, so a copy elsewhere may share its vectors
        if r.sha and r.state == "indexed":
            present_by_sha.setdefault(r.sha, r)
    moved_ids: set[int] = set()
    for entry in fresh:
        sha = _safe_hash(hasher, entry.path)
        if sha is None:
            cs.added.append(entry)
            continue
        cs.hashes[entry.path] = sha
        if gone_by_sha.get(sha):
            rec = gone_by_sha[sha].pop(0)
            moved_ids.add(rec.id)
            cs.moved.append((rec, entry))
        elif sha in present_by_sha:
            cs.copies.append((present_by_sha[sha], entry))
        else:
            cs.added.append(entry)
    cs.deleted = [r for r in gone if r.id not in moved_ids]
    return cs


def _safe_hash(hasher: Callable[[str], str], path: str) -> str | None:
    try:
        return hasher(path)
    except OSError:
        return None  # unreadable or vanished: processing will record the reason
