"""Crash points for the kill tests: `SEARCHENGINE_CRASH_AT=name:n` SIGKILLs the process the
n-th time `point(name)` runs. Unset (always, outside tests) it costs one dict lookup.
`SEARCHENGINE_CRASH_ONCE=FILE` makes the kill happen once across processes (the first to
create FILE dies; a restarted cluster worker with the same settings goes on), and with
`SEARCHENGINE_CRASH_TIMES=N` N times in all (markers FILE, FILE.1, ... FILE.N-1)."""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("SEARCHENGINE_CRASH_AT", "")
_name, _, _count = _spec.partition(":")
_remaining = int(_count or "1") if _spec else 0


def point(name: str) -> None:
    global _remaining
    if not _spec or name != _name:
        return
    _remaining -= 1
    if _remaining <= 0:
        once = os.environ.get("SEARCHENGINE_CRASH_ONCE")
        if not once:
            os.kill(os.getpid(), signal.SIGKILL)
        times = int(os.environ.get("SEARCHENGINE_CRASH_TIMES", "1"))
        for i in range(times):
            marker = f"{once}.{i}" if i else once
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            os.kill(os.getpid(), signal.SIGKILL)
