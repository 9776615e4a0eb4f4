"""Work ahead in threads with a time limit per item: a decoder that hangs on one file costs
that file, not the run. A thread cannot be killed, so a late one is abandoned: it runs on as
a daemon thread (it never keeps the process alive) and its result is thrown away."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

_END = object()


class DeadlineExceeded(Exception):
    """A call ran past its time limit (its thread was abandoned)."""


class _Job(Generic[A, R]):
    __slots__ = ("item", "state", "started", "result", "error")

    def __init__(self, item: A) -> None:
        self.item = item
        self.state = "new"  # new -> running -> done | abandoned
        self.started = 0.0
        self.result: R | None = None
        self.error: BaseException | None = None


def ordered_with_deadline(
    fn: Callable[[A], R],
    items: Iterable[A],
    *,
    workers: int,
    window: int,
    limit_s: float,
    on_timeout: Callable[[A], R],
    name: str = "worker",
) -> Iterator[R]:
    """`fn(item)` for each item, in order, run up to `window` items ahead in at most
    `workers` threads. An item still running `limit_s` seconds after it started yields
    `on_timeout(item)` instead, and its thread no longer counts against `workers`."""
    cond = threading.Condition()
    queue: deque[_Job[A, R]] = deque()
    source = iter(items)

    def run(job: _Job[A, R]) -> None:
        try:
            job.result = fn(job.item)
        except BaseException as exc:  # handed to the consumer, in its thread
            job.error = exc
        with cond:
            if job.state == "running":
                job.state = "done"
            start_more()  # the next item starts now, even while the consumer is busy
            cond.notify_all()

    def start_more() -> None:  # under cond; jobs start in order, so the head starts first
        running = sum(1 for j in queue if j.state == "running")
        for job in queue:
            if running >= workers:
                return
            if job.state == "new":
                job.state, job.started = "running", time.monotonic()
                threading.Thread(target=run, args=(job,), name=name, daemon=True).start()
                running += 1

    while True:
        fresh: list[_Job[A, R]] = []
        while len(queue) + len(fresh) < window:
            item = next(source, _END)  # outside the lock: the source may be slow
            if item is _END:
                break
            fresh.append(_Job(item))  # type: ignore[arg-type]
        with cond:
            queue.extend(fresh)
            if not queue:
                return
            start_more()
            head = queue[0]
            while head.state != "done":
                left = head.started + limit_s - time.monotonic()
                if left <= 0:
                    head.state = "abandoned"
                    break
                cond.wait(left)
            queue.popleft()
        if head.state == "abandoned":
            yield on_timeout(head.item)
        elif head.error is not None:
            raise head.error
        else:
            yield head.result  # type: ignore[misc]


def call_with_deadline(fn: Callable[[], R], limit_s: float, name: str = "worker") -> R:
    """`fn()` in a daemon thread; DeadlineExceeded if it has not returned in `limit_s`."""
    return next(
        ordered_with_deadline(
            lambda f: f(),
            [fn],
            workers=1,
            window=1,
            limit_s=limit_s,
            on_timeout=_raise_timeout,
            name=name,
        )
    )


def _raise_timeout(_: object) -> object:
    raise DeadlineExceeded


def iterate_with_deadline(it: Iterable[R], limit_s: float, name: str = "worker") -> Iterator[R]:
    """Items of `it`, each of which must come within `limit_s` (DeadlineExceeded if not)."""
    source = iter(it)
    while True:
        item = call_with_deadline(lambda: next(source, _END), limit_s, name)
        if item is _END:
            return
        yield item  # type: ignore[misc]
