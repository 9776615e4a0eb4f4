"""Watch mode: keep an index current as files appear, change, move and disappear.

A watchdog observer reports file events. Each event is reduced to the folder it touches (a
file's folder; a moved file's two folders), the folders wait until events stop for a moment
(debounce, capped by a longest delay so a steady stream is still indexed), and one
`Engine.index(folders)` run takes them all: the indexer's own diff then decides what was
added, changed, moved (by content hash, both sides being in the same run) or deleted. The
watcher keeps no state of its own, so after a kill -9 the next `watch` or `index` run
completes the work (the index is crash-safe per file).

Where inotify watches run out (the kernel's per-user limit, fs.inotify.max_user_watches),
the watcher says so in one line and rescans the roots every `interval` seconds instead.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from searchengine.crawler import IGNORE_FILE, display_path, is_junk, under
from searchengine.errors import UserError

if TYPE_CHECKING:
    from searchengine.engine import Engine
    from searchengine.indexer import IndexSummary

DEBOUNCE_S = 1.0
"""Quiet time after the last event before a batch is indexed."""
MAX_DELAY_S = 10.0
"""Longest wait after the first event of a batch, however busy the folders stay."""
INTERVAL_S = 60.0
"""Seconds between rescans where events cannot be watched."""
RETRY_S = 5.0
"""First wait before retrying a batch that failed (another writer, a full disk)."""

EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
"""What can change the index. Opened and read-only closed events are left out: the
indexer reading a file must not trigger another batch."""

Say = Callable[[str], None]


# ---- from events to folders ----------------------------------------------------------


def _components(path: str) -> list[str]:
    return path.split(os.sep)


def collapse(folders: Iterable[str]) -> list[str]:
    """The folders without those inside another one: indexing a folder covers its tree."""
    kept: list[str] = []
    for folder in sorted(set(folders), key=_components):  # a folder sorts before its tree
        if not kept or not under(folder, [kept[-1]]):
            kept.append(folder)
    return kept


def root_of(path: str, roots: Sequence[str]) -> str | None:
    """The watched root holding `path` (the innermost one), or None."""
    best = None
    for root in roots:
        if under(path, [root]) and (best is None or len(root) > len(best)):
            best = root
    return best


def _skipped(path: str, root: str) -> bool:
    """Whether the walk would skip `path` (hidden or junk below the root). A changed
    .searchignore is not skipped: it changes what its folder holds."""
    rel = os.path.relpath(path, root)
    if rel == ".":
        return False
    parts = rel.split(os.sep)
    if parts[-1] == IGNORE_FILE:
        parts = parts[:-1]
    return any(is_junk(p) for p in parts)


def folders_for(event: FileSystemEvent, roots: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The folders an event asks to index again: the folder of each path it names (a file's
    folder, a moved or deleted folder's parent), inside a watched root, unless the walk
    would skip the path anyway (hidden, junk, the index folder)."""
    if type(event) not in EVENTS:
        return []
    paths = [os.fsdecode(event.src_path)]
    if event.event_type == "moved":
        paths.append(os.fsdecode(event.dest_path))
    out = []
    for path in paths:
        root = root_of(path, roots)
        if root is None or under(path, exclude) or _skipped(path, root):
            continue
        folder = os.path.dirname(path) if path != root else path
        out.append(folder if under(folder, [root]) else root)
    return out


def _nearest_existing(folder: str, root: str) -> str:
    """The folder, or the closest folder above it up to the root, that still exists: a
    deleted folder's files are forgotten by indexing its parent."""
    while folder != root and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    return folder


def _widen_for_ignores(folder: str, root: str) -> str:
    """The highest folder between root and `folder` holding a .searchignore (or `folder`):
    a walk only applies the ignore files it meets, so it must start above them all."""
    widest, current = folder, folder
    while current != root:
        current = os.path.dirname(current)
        if os.path.isfile(os.path.join(current, IGNORE_FILE)):
            widest = current
    return widest


def targets(folders: Iterable[str], roots: Sequence[str]) -> tuple[list[str], list[str]]:
    """What to index for a batch of folders, and the roots that are gone (nothing of them
    is indexed: the index keeps their files, as `index` does for a missing root)."""
    out: list[str] = []
    gone: list[str] = []
    for folder in folders:
        root = root_of(folder, roots)
        if root is None:
            continue
        if not os.path.exists(root):
            gone.append(root)
            continue
        if os.path.isdir(root):
            folder = _widen_for_ignores(_nearest_existing(folder, root), root)
        out.append(folder)
    return collapse(out), sorted(set(gone))


# ---- debouncing ----------------------------------------------------------------------


@dataclass
class Pending:
    """Folders waiting to be indexed, and when: `debounce_s` after the last event, but
    never later than `max_delay_s` after the first. Thread-safe (the observer adds)."""

    debounce_s: float = DEBOUNCE_S
    max_delay_s: float = MAX_DELAY_S
    folders: set[str] = field(default_factory=set)
    first: float | None = None
    last: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, folders: Iterable[str], now: float) -> bool:
        """Record folders; True if any were given."""
        folders = list(folders)
        if not folders:
            return False
        with self._lock:
            self.folders.update(folders)
            self.first = now if self.first is None else self.first
            self.last = now
        return True

    def due_in(self, now: float) -> float | None:
        """Seconds until the batch is due (0: now), None when nothing waits."""
        with self._lock:
            if self.first is None or self.last is None:
                return None
            due = min(self.last + self.debounce_s, self.first + self.max_delay_s)
            return max(0.0, due - now)

    def take(self) -> list[str]:
        """The waiting folders, collapsed; the batch starts afresh."""
        with self._lock:
            folders = collapse(self.folders)
            self.folders.clear()
            self.first = self.last = None
            return folders


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.watcher.event(event)


class _Overflow(logging.Handler):
    """The kernel dropped events (its inotify queue was full): watchdog rebuilds its watches
    and logs a warning, but reports no event, so the roots are rescanned whole."""

    LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")

    def __init__(self, watcher: Watcher) -> None:
        super().__init__(logging.WARNING)
        self.watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.watcher.lost_events()

    def __enter__(self) -> _Overflow:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


# ---- the inotify limit ---------------------------------------------------------------

MAX_WATCHES = "/proc/sys/fs/inotify/max_user_watches"


def inotify_limit() -> int | None:
    """The kernel's limit on inotify watches per user, where there is one to read."""
    try:
        with open(MAX_WATCHES) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _count_watches(pid: str) -> int:
    total = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                total += fh.read().count("inotify wd:")
        except OSError:
            continue
    return total


def own_watches() -> int:
    """inotify watches this process holds (Linux /proc; 0 where unknown)."""
    return _count_watches("self")


def user_watches() -> int:
    """inotify watches held by all of this user's processes (what the limit counts)."""
    total = 0
    uid = os.getuid()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        total += _count_watches(pid)
    return total


def _limit_reason(limit: int | None) -> str:
    return "the inotify watch limit is reached" + (
        f" (fs.inotify.max_user_watches = {limit})" if limit else ""
    )


def _fallback_reason(exc: OSError) -> str | None:
    if exc.errno == errno.ENOSPC:
        return _limit_reason(inotify_limit())
    if exc.errno == errno.EMFILE:
        return "the inotify instance limit is reached (fs.inotify.max_user_instances)"
    return None


# ---- the watcher ---------------------------------------------------------------------


def format_batch(summary: IndexSummary, *, full: bool = False) -> str | None:
    """One line for a batch: what changed (all counts when `full`), None if nothing did."""
    counts = [
        ("added", summary.added),
        ("changed", summary.changed),
        ("moved", summary.moved),
        ("deleted", summary.deleted),
        ("unchanged", summary.unchanged),
        ("failed", summary.failed),
        ("skipped", summary.skipped),
        ("pending", summary.pending),
    ]
    shown = [f"{n} {name}" for name, n in counts if full or (n and name != "unchanged")]
    if not shown:
        return None
    stamp = datetime.now().strftime("%H:%M:%S")
    return f"{stamp} {', '.join(shown)} in {summary.seconds:.1f}s"


class Watcher:
    """Keeps one index current with some roots until stopped.

    `on_batch(summary, initial)` hears of every index run (the first covers the roots
    whole), `on_ready()` of the end of the first one; `say(line)` gets the one-line
    notices (fallback to rescans, retries, notes from the indexer), each once."""

    def __init__(
        self,
        engine: Engine,
        roots: Iterable[str | os.PathLike[str]],
        *,
        on_batch: Callable[[IndexSummary, bool], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        say: Say | None = None,
        debounce_s: float = DEBOUNCE_S,
        max_delay_s: float = MAX_DELAY_S,
        interval_s: float = INTERVAL_S,
        poll: bool = False,
    ) -> None:
        self.engine = engine
        self.roots = collapse(os.path.abspath(os.fspath(r)) for r in roots)
        if not self.roots:
            raise UserError("give at least one file or folder to watch")
        for root in self.roots:
            if not os.path.exists(root):
                raise UserError(f"no such file or folder: {display_path(root)}")
        if interval_s <= 0 or debounce_s < 0 or max_delay_s < 0:
            raise UserError("--interval must be above 0 seconds, --debounce 0 or more")
        index_dir = os.path.abspath(engine.dir)
        self.exclude = sorted({index_dir, os.path.realpath(index_dir)})
        self.pending = Pending(debounce_s, max(max_delay_s, debounce_s))
        self.interval_s = interval_s
        self.polling = poll
        self.on_batch = on_batch or (lambda _s, _i: None)
        self.on_ready = on_ready or (lambda: None)
        self.say = say or (lambda _line: None)
        self.observer: Observer | None = None  # type: ignore[valid-type]
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._said: set[str] = set()
        self._others = 0  # inotify watches other processes of this user hold
        self._new_dirs = False
        self._retry_at = 0.0
        self._backoff = RETRY_S
        self._rearm = False  # try inotify again at rescans (it stopped, it did not run out)

    # -- events (observer thread) --

    def event(self, event: FileSystemEvent) -> None:
        if self.pending.add(folders_for(event, self.roots, self.exclude), time.monotonic()):
            if isinstance(event, DirCreatedEvent | DirMovedEvent):
                self._new_dirs = True
            self._wake.set()

    def lost_events(self) -> None:
        """Events were lost: the next batch covers the roots whole."""
        self._say_once("some file events were lost (inotify queue overflow): rescanning")
        self.pending.add(self.roots, time.monotonic())
        self._wake.set()

    # -- control --

    def stop(self) -> None:
        """Ask `run` to return (from any thread)."""
        self.stopping.set()
        self._wake.set()

    def run(self) -> None:
        """Index the roots whole, then each batch of changes, until `stop()` (or an
        exception such as KeyboardInterrupt). The observer starts first, so nothing that
        changes during the first run is missed."""
        with _Overflow(self):
            try:
                if not self.polling:
                    self._start_observer()
                self._run_batch(self.roots, initial=True)
                self.on_ready()
                self._loop()
            finally:
                self._stop_observer()

    def _loop(self) -> None:
        next_scan = time.monotonic() + self.interval_s
        while not self.stopping.is_set():
            now = time.monotonic()
            waits = [next_scan - now] if self.polling else []
            due = self.pending.due_in(now)
            if due is not None:
                waits.append(max(due, self._retry_at - now))
            if self.observer is not None:
                waits.append(1.0)  # look after the observer's health now and then
            self._wake.wait(max(0.0, min(waits)) if waits else None)
            self._wake.clear()
            if self.stopping.is_set():
                break
            self._check_observer()
            now = time.monotonic()
            batch: list[str] = []
            if self.polling and now >= next_scan:
                self._rearm_observer()
                batch = self.roots + self.pending.take()
                next_scan = now + self.interval_s
            elif (due := self.pending.due_in(now)) is not None and due <= 0:
                if now >= self._retry_at:
                    batch = self.pending.take()
            if batch:
                self._run_batch(batch)

    def _run_batch(self, folders: list[str], *, initial: bool = False) -> None:
        """Index a batch; if it fails, its folders wait, longer after each failure."""
        if self._index(folders, initial=initial):
            self._backoff = RETRY_S
            return
        self.pending.add(folders, time.monotonic())
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, max(self.interval_s, RETRY_S))

    def _index(self, folders: list[str], *, initial: bool = False) -> bool:
        """One index run; False if it failed and should be retried."""
        paths, gone = targets(folders, self.roots)
        for root in gone:
            self._say_once(
                f"{display_path(root)} is gone: its files stay in the index until "
                "'searchengine index --prune' or 'searchengine remove' forgets them"
            )
        if not paths:
            return True
        try:
            summary = self.engine.index(paths)
        except UserError as exc:  # another writer holds the index, most likely
            self._say_once(f"{exc}; will retry")
            return False
        except OSError as exc:  # a full disk, a vanished mount: the next try may work
            self._say_once(f"indexing failed ({exc}); will retry")
            return False
        self.on_batch(summary, initial)
        for note in summary.notes:
            self._say_once(f"note: {note}")
        if self._new_dirs and self.observer is not None:
            self._new_dirs = False
            self._check_limit()
        return True

    def _say_once(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            self.say(line)

    # -- the observer and its fallback --

    def _start_observer(self) -> None:
        observer = Observer()
        try:
            for root in self.roots:
                if os.path.isdir(root):
                    observer.schedule(_Handler(self), root, recursive=True, event_filter=EVENTS)
                else:  # a single file: its folder, but only its own events count
                    observer.schedule(
                        _Handler(self), os.path.dirname(root), recursive=False, event_filter=EVENTS
                    )
            observer.start()
        except OSError as exc:
            reason = _fallback_reason(exc)
            _stop(observer)
            if reason is None:
                raise UserError(f"cannot watch the given folders: {exc}") from None
            self._fall_back(reason)
            return
        self.observer = observer
        self._others = max(0, user_watches() - own_watches())
        self._check_limit()

    def _check_limit(self) -> None:
        """Watchdog skips subfolders it cannot watch without a word; all watches of this
        user at the limit means some folders may be unwatched."""
        limit = inotify_limit()
        if limit is not None and own_watches() + self._others >= limit:
            self._fall_back(_limit_reason(limit))

    def _check_observer(self) -> None:
        observer = self.observer
        if observer is None:
            return
        if not observer.is_alive() or not all(e.is_alive() for e in observer.emitters):
            gone = [display_path(r) for r in self.roots if not os.path.exists(r)]
            self._fall_back(f"{', '.join(gone)} was removed" if gone else "the watcher stopped")
            self._rearm = True

    def _rearm_observer(self) -> None:
        """Watch with inotify again once the roots are back (after a watcher stopped)."""
        if not self._rearm or not all(os.path.exists(r) for r in self.roots):
            return
        try:
            self._start_observer()
        except UserError:
            return
        if self.observer is not None:
            self._rearm = False
            self.polling = False
            self.say("watching with inotify again")

    def _fall_back(self, reason: str) -> None:
        self._stop_observer()
        self.polling = True
        self.say(f"{reason}: rescanning every {self.interval_s:g}s instead")

    def _stop_observer(self) -> None:
        observer, self.observer = self.observer, None
        if observer is not None:
            _stop(observer)


def _stop(observer: Observer) -> None:  # type: ignore[valid-type]
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)
    except Exception:  # a half-started observer: nothing left to stop
        pass


# ---- the command ---------------------------------------------------------------------


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM stops like Ctrl-C (KeyboardInterrupt, so a batch in progress is cut short,
    which the index survives); a second signal leaves at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hits = 0

    def handler(signum: int, _frame: object) -> None:
        nonlocal hits
        hits += 1
        if hits > 1:
            os._exit(128 + signum)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def run_watch(
    engine: Engine,
    paths: Sequence[str],
    *,
    say: Say,
    tell: Say,
    json_out: bool = False,
    interval_s: float = INTERVAL_S,
    debounce_s: float = DEBOUNCE_S,
    poll: bool = False,
) -> None:
    """`searchengine watch`: batch lines (or JSON lines) to `say`, notices to `tell`,
    until SIGINT or SIGTERM."""
    import json

    def on_batch(summary: IndexSummary, initial: bool) -> None:
        if json_out:
            say(json.dumps({"initial": initial, **summary.to_json()}, ensure_ascii=False))
        elif (line := format_batch(summary, full=initial)) is not None:
            say(line)

    def on_ready() -> None:
        what = ", ".join(display_path(r) for r in watcher.roots)
        how = f"rescans every {interval_s:g}s" if watcher.polling else "inotify"
        tell(f"watching {what} ({how}); Ctrl-C to stop")

    watcher = Watcher(
        engine,
        paths,
        on_batch=on_batch,
        on_ready=on_ready,
        say=tell,
        debounce_s=debounce_s,
        interval_s=interval_s,
        poll=poll,
    )
    with stop_on_signals():
        try:
            watcher.run()
        except KeyboardInterrupt:
            pass
    tell("stopped")
