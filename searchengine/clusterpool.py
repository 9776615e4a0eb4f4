"""The worker pool of a cluster run: batches out to Ray actors, results back as they come, and
the fault rules that keep the run going when a worker, a result or a node is lost.

Why its own module: which Ray error costs a batch a try, when the pool shrinks and when the
run gives up are the hard part of cluster indexing; they are tested against fake actors,
without a cluster (tests/test_clusterpool.py), and only `ClusterIndexer` uses them. Two
kinds of jobs go through it: new and changed files (`_Actor.run_batch`, `Item`s in, `_Work`
records out) and files to decode again after a model change (`_Actor.redo_batch`,
`reembed.Remake`s in, `Remade`s out); the pool is told which actor method to call, how big
an item is and what record stands for an item it gives up.

The rules:
- a batch's worker died, its result was lost (object lost, owner died, reconstruction
  failed), it was killed for memory, its node died, or any other Ray error: the batch counts
  a try and is sent again, to another worker when there is one; after TRIES it is split into
  single files, and a file that still fails is recorded failed with the reason;
- a worker that is restarting (`ActorUnavailableError`): sent again, elsewhere when it can,
  no try counted;
- an exception raised by the worker's own code (`RayTaskError`, a bug): that batch's files
  fail with the error, the run goes on;
- the pool never holds more workers than the alive nodes can host: Ray restarts a worker whose
  node died only where a CPU (or GPU share) is free, and without one the worker, and every
  batch sent to it, would wait for ever. After each worker error, and each second, the
  pool re-reads the alive nodes and kills the surplus (workers on dead nodes and workers
  that just failed first), resending their batches without counting a try;
- where no alive node can host even one worker for NO_HOST_S, the files left fail as
  transient (the next run retries them)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from searchengine.indexer import _guess_type, _Work

if TYPE_CHECKING:
    from searchengine.crawler import Entry
    from searchengine.store.catalog import FileRecord

Item = tuple["Entry", "FileRecord | None", "str | None"]
Result = tuple[list[Any], list[str], dict[str, str]]
"""A batch's records (one per item: `_Work` for `run_batch`), its notes and the identities
of the models the worker used."""
GiveUp = Callable[[Any, str, bool], Any]
"""give_up(item, reason, transient): the record of an item the pool gives up."""

BATCH_FILES = 16
BATCH_BYTES = 64 << 20
"""A batch ends at this many files or bytes on disk (a long video goes alone)."""
IN_FLIGHT_PER_WORKER = 2
"""Batches queued per worker: one running, one waiting, so no worker idles on the driver."""
TRIES = 3
"""Times a batch is sent before it is split; a single file after that is failed. This, not
a cap on actor restarts, bounds the retries: a capped actor dies for good after a few
crashing files, and every file sent to it after that would be failed for nothing."""
WORKER_DIED = "a cluster worker died while decoding or embedding this file ({n} tries)"
LOST = "the cluster lost this file's batch {n} times (last: {why})"
NO_HOST = (
    "no alive cluster node can host a worker ({need}) for {s:.0f} s: "
    "left for the next run"
)
POLL_S = 1.0
"""How long the driver waits for a result before it re-reads the cluster's alive nodes (and
how often it re-reads them while results come)."""
NO_HOST_S = 30.0
"""How long the pool waits for a node that can host a worker before it gives up the rest."""
UNAVAILABLE_PAUSE_S = 0.2
"""Pause before a batch refused by a restarting worker is sent again."""


@dataclass
class _Batch:
    items: list[Any]
    tries: int = 0
    avoid: Any = None  # the actor it last failed on
    why: str | None = None  # the last failure that was not a worker death
    transient: bool = False  # that failure may pass (a lost object, a dead node)


def capacity(nodes: list[dict[str, Any]], need: dict[str, float]) -> int:
    """How many actors, each needing `need` ({'CPU': 1, 'GPU': 0.5}), the alive nodes of
    `ray.nodes()` can host, node by node (an actor never spans two nodes)."""
    total = 0
    for node in nodes:
        if not node.get("Alive"):
            continue
        have = node.get("Resources") or {}
        fits = [int(float(have.get(k, 0)) / v + 1e-9) for k, v in need.items() if v > 0]
        total += min(fits) if fits else 0
    return total


class Pool:
    """Ray actors that decode and embed; `results` sends the batches and yields what comes
    back, `close` ends the actors. `need`: what one actor takes (see `capacity`). Each batch
    goes to the actors' `method`; `size(item)` (bytes) cuts the batches, and `give_up`
    makes the record of an item that fails for good (by default: new and changed files,
    recorded failed)."""

    def __init__(
        self,
        ray: Any,
        actors: list[Any],
        need: dict[str, float],
        note: Callable[[str], None],
        *,
        method: str = "run_batch",
        give_up: GiveUp | None = None,
        size: Callable[[Any], int] | None = None,
    ) -> None:
        from ray import exceptions

        self.ray = ray
        self.errors = exceptions
        self.actors = list(actors)
        self.need = need
        self.note = note
        self.method = method
        self.give_up: GiveUp = give_up or _failed
        self.size: Callable[[Any], int] = size or _entry_size
        now = time.monotonic()
        self.load = {id(a): 0 for a in self.actors}
        self.answered = {id(a): now for a in self.actors}  # last result, or the start
        self.failed: dict[int, float] = {}  # last error
        self.node_of: dict[int, str] = {}  # node of its last result
        self.queue: list[_Batch] = []  # pop() takes the next
        self.running: dict[Any, tuple[_Batch, Any]] = {}
        self.homeless_since: float | None = None
        self.fitted = now  # when the alive nodes were last read
        self.sent = self.retried = 0
        self.answered_items = 0  # items whose batch a worker answered
        self.wait_s = 0.0

    def results(self, todo: list[Any]) -> Iterator[Result]:
        """The records of `todo`, a batch at a time, in the order they come back."""
        self.queue = [_Batch(b) for b in reversed(_batches(todo, self.size))]
        while self.queue or self.running:
            self._send()
            t0 = time.monotonic()
            ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
            self.wait_s += time.monotonic() - t0
            if ready:
                works, notes, made = self._take(ready[0])
            else:
                works, notes, made = [], [], {}
            if not ready or time.monotonic() - self.fitted > POLL_S:
                works += self._fit()
            if works:
                yield works, notes, made

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)

    def _send(self) -> None:
        while self.queue and min(self.load.values()) < IN_FLIGHT_PER_WORKER:
            batch = self.queue.pop()
            actor = min(
                self.actors,
                key=lambda a, b=batch: (a is b.avoid, self.load[id(a)]),  # type: ignore[misc]
            )
            self.running[getattr(actor, self.method).remote(batch.items)] = (batch, actor)
            self.load[id(actor)] += 1
            self.sent += 1

    def _take(self, ref: Any) -> Result:
        """One batch's outcome: its records, or its failure handled (see the module's rules)."""
        err = self.errors
        batch, actor = self.running.pop(ref)
        self.load[id(actor)] -= 1
        try:
            works, notes, made, node = self.ray.get(ref)
        except err.ActorUnavailableError:  # a RayActorError: before it
            # the worker is restarting (another batch killed it, or its node is gone): not
            # a try of this batch; sent again, elsewhere if it can, after a pause that lets
            # the restart go on
            time.sleep(UNAVAILABLE_PAUSE_S)
            self.failed[id(actor)] = time.monotonic()
            batch.avoid = actor
            self.queue.append(batch)
            return self._fit(), [], {}
        except err.RayActorError:
            return self._lost(batch, actor, None), [], {}
        except err.RayTaskError as exc:  # a bug in the worker's code: one batch, not the run
            cause = (str(exc.cause).splitlines() or ["?"])[0][:200]
            why = f"cluster worker error: {cause}"
            return [self.give_up(it, why, True) for it in batch.items], [], {}
        except err.RayError as exc:  # lost result, out of memory, crashed worker, dead node
            return self._lost(batch, actor, exc), [], {}
        self.answered[id(actor)] = time.monotonic()
        self.node_of[id(actor)] = node
        self.answered_items += len(batch.items)
        return works, notes, made

    def _lost(self, batch: _Batch, actor: Any, exc: Exception | None) -> list[Any]:
        """A batch whose worker died or whose result was lost: sent again elsewhere, then
        split into single files; a single file that fails every time is failed."""
        err = self.errors
        self.retried += 1
        self.failed[id(actor)] = time.monotonic()
        if exc is None:
            batch.why, batch.transient = None, False
        else:
            first = (str(exc).strip().split(". ") or [""])[0].splitlines()[0][:120]
            batch.why = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            # out of memory or a crashed worker: likely the file, like a death; else it may pass
            batch.transient = not isinstance(exc, (err.OutOfMemoryError, err.WorkerCrashedError))
        batch.tries += 1
        batch.avoid = actor
        given_up: list[Any] = []
        if batch.tries < TRIES:
            self.queue.append(batch)
        elif len(batch.items) > 1:
            self.queue += reversed([_Batch([it], avoid=actor) for it in batch.items])
        else:
            if batch.why is None:
                why = WORKER_DIED.format(n=batch.tries)
            else:
                why = LOST.format(n=batch.tries, why=batch.why)
            given_up = [self.give_up(batch.items[0], why, batch.transient)]
        return given_up + self._fit()

    def _fit(self) -> list[Any]:
        """Shrink the pool to what the alive nodes can host (see the module's rules); the
        files given up where no node can host a worker for NO_HOST_S."""
        nodes = self.ray.nodes()
        room = capacity(nodes, self.need)
        now = self.fitted = time.monotonic()
        if room < 1:
            self.homeless_since = self.homeless_since or now
            if now - self.homeless_since < NO_HOST_S:
                return []
            need = ", ".join(f"{v:g} {k}" for k, v in self.need.items() if v > 0)
            return self._abandon(NO_HOST.format(need=need, s=now - self.homeless_since))
        self.homeless_since = None
        if len(self.actors) <= room:
            return []
        dead = {n.get("NodeID") for n in nodes if not n.get("Alive")}
        before = len(self.actors)
        while len(self.actors) > room:
            self._drop(min(self.actors, key=lambda a: self._worth(a, dead)))
        self.note(
            f"the cluster's alive nodes can host {room} worker(s): the pool went from "
            f"{before} to {room}, and the batches of the workers ended were sent again"
        )
        return []

    def _worth(self, actor: Any, dead: set[Any]) -> tuple[int, float]:
        """Which worker to end first: one on a dead node, then one that failed since its
        last result, then the one that answered least recently."""
        key = id(actor)
        if self.node_of.get(key) in dead:
            return 0, self.answered[key]
        if self.failed.get(key, float("-inf")) > self.answered[key]:
            return 1, -self.failed[key]
        return 2, self.answered[key]

    def _drop(self, actor: Any) -> None:
        """End `actor` for good; its batches go back to the queue, no try counted."""
        self.ray.kill(actor, no_restart=True)
        self.actors.remove(actor)
        del self.load[id(actor)]
        for ref, (batch, owner) in list(self.running.items()):
            if owner is actor:
                del self.running[ref]
                self.queue.append(batch)

    def _abandon(self, reason: str) -> list[Any]:
        """Every file still queued or running, failed as transient with `reason`."""
        batches = self.queue + [b for b, _ in self.running.values()]
        self.queue, self.running = [], {}
        for key in self.load:
            self.load[key] = 0
        return [self.give_up(it, reason, True) for b in batches for it in b.items]


def _failed(item: Item, reason: str, transient: bool) -> _Work:
    entry, record, sha = item
    work = _Work(entry=entry, record=record, sha=sha, state="failed", reason=reason)
    work.transient = transient
    work.file_type = record.type if record is not None else _guess_type(entry.path)
    return work


def _entry_size(item: Item) -> int:
    return item[0].size


def _batches(todo: list[Any], size_of: Callable[[Any], int]) -> list[list[Any]]:
    """Consecutive files, cut at BATCH_FILES files or BATCH_BYTES bytes."""
    out: list[list[Any]] = []
    batch: list[Any] = []
    size = 0
    for item in todo:
        if batch and (len(batch) >= BATCH_FILES or size + size_of(item) > BATCH_BYTES):
            out.append(batch)
            batch, size = [], 0
        batch.append(item)
        size += size_of(item)
    if batch:
        out.append(batch)
    return out
