"""Files being decoded right now, written down before each attempt, so a file that kills the
process (a native crash in a decoder) is known at the next run and is not tried again.

The journal is a small file in the index folder, rewritten in place as files start and
finish decoding. A write survives a killed process (the kernel keeps it), so no fsync is
needed; a power cut may lose it, which only means a suspect is tried once more.

A file left in the journal is a suspect, not a culprit: the process may have been killed
from outside (kill -9, out of memory) while an innocent file was being decoded. So at the
next run each suspect is first decoded in a forked child: if the child dies of a signal,
the file is the culprit; if it lives, the file is indexed as usual. A suspect left in the
journal by two crashes in a row is a culprit without a probe.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

JOURNAL_NAME = "inflight"
END = b".\n"
CRASH_REASON = "crashed the indexer"
STRIKES_TO_BLAME = 2
"""Crashes a file must be in flight for to be blamed without a probe's proof."""


class Journal:
    """The set of files in flight (by path key), mirrored to `<index>/inflight`.

    Each line is `hex(path_key) strikes`; `strikes` counts earlier crashes the file was
    in flight for. The file is rewritten whole on every change, then truncated, and ends
    with a `.` line: a reader stops there, so a longer old tail is never misread."""

    def __init__(self, index_dir: Path) -> None:
        self.path = index_dir / JOURNAL_NAME
        self.left_over = read_journal(self.path)
        """path key -> crashes it was in flight for (1 = the last run's), from the last run."""
        self._strikes = dict(self.left_over)
        self._keys: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> Journal:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._write()
        return self

    def __exit__(self, *exc: object) -> None:
        """A Python exception is no native crash: nothing in flight is suspect then."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)

    def add(self, key: bytes) -> None:
        with self._lock:
            self._keys[key] = self._keys.get(key, 0) + 1
            self._write()

    def discard(self, key: bytes) -> None:
        with self._lock:
            count = self._keys.pop(key, 0)
            if count > 1:
                self._keys[key] = count - 1
            elif count == 0:
                return
            self._write()

    def _write(self) -> None:
        if self._fd is None:
            return
        data = b"".join(
            b"%s %d\n" % (key.hex().encode(), self._strikes.get(key, 0)) for key in self._keys
        )
        data += END
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))


def read_journal(path: Path) -> dict[bytes, int]:
    """Files a previous run left in flight -> how many crashes in a row they were in."""
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    out: dict[bytes, int] = {}
    for line in raw.splitlines(keepends=True):
        if line == END:
            return out
        key, _, strikes = line.strip().partition(b" ")
        try:
            out[bytes.fromhex(key.decode())] = int(strikes or b"0") + 1
        except ValueError:
            return {}  # not a journal this code wrote: trust nothing in it
    return {}  # no end mark: torn or foreign


def crashes_in_child(fn: Callable[[], object], limit_s: float) -> bool | None:
    """Run `fn` in a forked child. True: the child died of a signal (the work crashes the
    process); False: it returned or raised (a Python error is no crash); None: unknown
    (no fork here, or the child ran past `limit_s` and was stopped)."""
    if not hasattr(os, "fork"):
        return None
    pid = os.fork()
    if pid == 0:  # the child: do the work, then leave without running any cleanup
        try:
            fn()
        except BaseException:
            pass
        os._exit(0)
    deadline = time.monotonic() + limit_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFSIGNALED(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)
