"""The cluster pool's fault rules against fake actors (no cluster, milliseconds each): every
Ray error but a worker's own exception costs the batch a try and is resent elsewhere, then
split, then failed with the reason; a pool whose node is gone shrinks to what the alive
nodes can host instead of waiting for ever; with no node left, the rest fails as transient
(issue 15). The real-cluster node loss is in tests/test_cluster.py."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from ray import exceptions as rx

from searchengine import clusterpool
from searchengine.cluster import ClusterIndexer, _kept
from searchengine.clusterpool import WORKER_DIED, Pool, capacity
from searchengine.crawler import Entry
from searchengine.indexer import _Work
from searchengine.reembed import Remade, Remake

HANG = object()  # a result that never comes (a worker restarting with no room)


class Ref:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome


class Actor:
    """Answers with `plan(actor, call_number, items)`: HANG, an exception, or None (done)."""

    def __init__(self, name: str, node: str, plan=None) -> None:
        self.name, self.node = name, node
        self.plan = plan or (lambda actor, n, items: None)
        self.calls: list[list[str]] = []
        self.killed = False
        self.run_batch = SimpleNamespace(remote=self._remote)

    def _remote(self, items):
        self.calls.append([it[0].path for it in items])
        outcome = self.plan(self, len(self.calls), items)
        if outcome is None:
            works = [_Work(entry=e, record=r, sha=s) for e, r, s in items]
            outcome = (works, [], {"clip": "weights"}, self.node)
        return Ref(outcome)


class FakeRay:
    def __init__(self, *nodes: str, cpus: float = 1) -> None:
        self.node_list = [
            {"NodeID": n, "Alive": True, "Resources": {"CPU": cpus}} for n in nodes
        ]
        self.began = time.monotonic()

    def kill_node(self, node: str) -> None:
        for n in self.node_list:
            if n["NodeID"] == node:
                n["Alive"] = False

    def nodes(self):
        return self.node_list

    def wait(self, refs, num_returns, timeout):
        assert time.monotonic() - self.began < 5, "the pool hangs"
        ready = [r for r in refs if r.outcome is not HANG]
        if not ready:
            time.sleep(min(timeout, 0.01))
        return ready[:num_returns], [r for r in refs if r not in ready[:num_returns]]

    def get(self, ref):
        if isinstance(ref.outcome, BaseException):
            raise ref.outcome
        return ref.outcome

    def kill(self, actor, no_restart):
        assert no_restart
        actor.killed = True


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(clusterpool, "BATCH_FILES", 2)
    monkeypatch.setattr(clusterpool, "POLL_S", 0.01)
    monkeypatch.setattr(clusterpool, "UNAVAILABLE_PAUSE_S", 0.0)
    monkeypatch.setattr(clusterpool, "NO_HOST_S", 0.05)


def todo(n: int):
    return [(Entry(path=f"/d/f{i}.txt", size=10, mtime_ns=0), None, None) for i in range(n)]


def run(ray: FakeRay, actors: list[Actor], files: int):
    """Every record the pool yields (each file once), its notes, and the pool."""
    notes: list[str] = []
    pool = Pool(ray, actors, {"CPU": 1.0, "GPU": 0.0}, notes.append)
    works: list[_Work] = []
    for batch, _, _ in pool.results(todo(files)):
        works += batch
    pool.close()
    assert sorted(w.entry.path for w in works) == sorted(e.path for e, _, _ in todo(files))
    return {w.entry.path: w for w in works}, notes, pool


def first_call_raises(error):
    return lambda actor, n, items: error if n == 1 else None


LOST = [
    rx.ObjectLostError("ab" * 14, None, ""),
    rx.OwnerDiedError("ab" * 14, None, ""),
    rx.ObjectReconstructionFailedError("ab" * 14),
    rx.OutOfMemoryError("Task was killed due to the node running low on memory."),
    rx.WorkerCrashedError(),
    rx.NodeDiedError("the node died"),
    rx.ActorDiedError(),
    rx.RaySystemError("system error"),
    rx.ObjectStoreFullError("full"),
]


@pytest.mark.parametrize("error", LOST, ids=lambda e: type(e).__name__)
def test_a_lost_batch_counts_a_try_and_is_resent_to_another_worker(error):
    a = Actor("a", "n1", first_call_raises(error))
    b = Actor("b", "n2")
    works, notes, pool = run(FakeRay("n1", "n2"), [a, b], 6)
    assert all(w.state == "indexed" for w in works.values())
    assert pool.retried == 1
    lost = a.calls[0]
    assert lost in b.calls  # resent to the other worker, not to the one it failed on
    assert notes == [] and a.killed and b.killed  # the pool fits: nobody ended early


OOM = "Task was killed due to the node running low on memory."
GIVEN_UP = [
    (rx.ActorDiedError(), WORKER_DIED.format(n=3), False),
    (
        rx.ObjectLostError("ab" * 14, None, ""),
        "the cluster lost this file's batch 3 times (last: ObjectLostError: Failed to retrieve",
        True,
    ),
    (rx.OutOfMemoryError(OOM), f"(last: OutOfMemoryError: {OOM})", False),  # likely the file
    (rx.NodeDiedError("the node died"), "(last: NodeDiedError: the node died)", True),
]


@pytest.mark.parametrize(
    ("error", "reason", "transient"), GIVEN_UP, ids=["died", "object-lost", "oom", "node-died"]
)
def test_a_batch_lost_every_time_is_split_and_each_file_failed_with_the_reason(
    error, reason, transient
):
    always = lambda actor, n, items: error  # noqa: E731
    actors = [Actor("a", "n1", always), Actor("b", "n2", always)]
    works, _, pool = run(FakeRay("n1", "n2"), actors, 2)
    for work in works.values():
        assert work.state == "failed" and reason in work.reason
        assert work.transient is transient
    assert pool.retried == 3 + 2 * 3  # the pair 3 times, then each file 3 times


def test_an_error_in_the_worker_code_fails_its_batch_and_the_run_goes_on():
    bug = rx.RayTaskError("run_batch", "Traceback ...", ValueError("bad thing"))
    a = Actor("a", "n1", first_call_raises(bug))
    works, _, pool = run(FakeRay("n1"), [a], 6)
    failed = {p for p, w in works.items() if w.state == "failed"}
    assert failed == set(a.calls[0])  # that batch only, not resent
    assert {works[p].reason for p in failed} == {"cluster worker error: bad thing"}
    assert pool.retried == 0 and len(a.calls) == 3


def test_a_restarting_worker_is_sent_the_batch_again_without_a_try():
    busy = rx.ActorUnavailableError("restarting", None)
    works, _, pool = run(FakeRay("n1"), [Actor("a", "n1", first_call_raises(busy))], 4)
    assert all(w.state == "indexed" for w in works.values()) and pool.retried == 0


class Redoer:
    """A worker for the second kind of job (re-embedding, `redo_batch`): its actor dies on
    every batch that holds `bomb`."""

    def __init__(self, node: str, bomb: str) -> None:
        self.node, self.bomb = node, bomb
        self.calls: list[list[str]] = []
        self.killed = False
        self.redo_batch = SimpleNamespace(remote=self._remote)

    def _remote(self, jobs: list[Remake]):
        self.calls.append([j.path for j in jobs])
        if any(j.path == self.bomb for j in jobs):
            return Ref(rx.ActorDiedError())
        return Ref(([Remade(j.file_id) for j in jobs], [], {"clip": "weights"}, self.node))


def test_a_reembedding_the_pool_gives_up_keeps_the_old_vectors(monkeypatch):
    """Re-embedding jobs: cut into batches by their own size, sent to `redo_batch`, and
    one whose worker dies every time is given up as "keep the old vectors", not failed."""
    monkeypatch.setattr(clusterpool, "BATCH_BYTES", 100)
    sizes = {"/d/a.png": 10, "/d/bomb.png": 10, "/d/big.mp4": 200, "/d/c.png": 10}
    jobs = [Remake(i, path, {"clip"}, False, size) for i, (path, size) in enumerate(sizes.items())]
    actors = [Redoer("n1", "/d/bomb.png"), Redoer("n2", "/d/bomb.png")]
    pool = Pool(
        FakeRay("n1", "n2"), actors, {"CPU": 1.0, "GPU": 0.0}, print,
        method="redo_batch", give_up=_kept, size=lambda job: job.size,
    )  # fmt: skip
    got = {r.file_id: r for batch, _, _ in pool.results(jobs) for r in batch}
    pool.close()
    assert sorted(got) == [0, 1, 2, 3]
    first = sorted(call for actor in actors for call in actor.calls[:1])
    assert first == [["/d/a.png", "/d/bomb.png"], ["/d/big.mp4"]]  # cut by bytes too
    assert [got[i].kept for i in (0, 2, 3)] == [None] * 3
    assert got[1].kept == "kept the old vectors of /d/bomb.png: " + WORKER_DIED.format(n=3)
    assert pool.answered_items == 3 and pool.retried == 3 + 3


def node_lost(ray: FakeRay, error: BaseException | None):
    """The worker's node dies on its second batch: that batch fails with `error` (or never
    answers), and the worker, restarting with no free CPU anywhere, never answers again."""

    def plan(actor, n, items):
        if n == 1:
            return None
        if n == 2:
            ray.kill_node(actor.node)
            return error or HANG
        return HANG

    return plan


@pytest.mark.parametrize("error", [None, rx.ActorDiedError()], ids=["silent", "actor-died"])
def test_a_pool_whose_node_died_shrinks_to_what_the_cluster_holds(error):
    ray = FakeRay("n1", "n2")
    a, b = Actor("a", "n1"), Actor("b", "n2", node_lost(ray, error))
    works, notes, pool = run(ray, [a, b], 12)
    assert all(w.state == "indexed" for w in works.values())
    assert pool.actors == [a] and b.killed
    assert notes == [
        "the cluster's alive nodes can host 1 worker(s): the pool went from 2 to 1, "
        "and the batches of the workers ended were sent again"
    ]
    assert b.calls[1] in a.calls  # the batch lost with the node was done by the survivor


def test_the_pool_ends_first_the_worker_on_the_dead_node():
    """Three nodes, one dies while its worker is busy: the other two keep their workers."""
    ray = FakeRay("n1", "n2", "n3")
    a, c = Actor("a", "n1"), Actor("c", "n3")
    b = Actor("b", "n2", node_lost(ray, None))
    works, notes, pool = run(ray, [a, b, c], 16)
    assert pool.actors == [a, c] and b.killed and len(notes) == 1


def test_with_no_node_left_the_rest_fails_as_transient_instead_of_hanging():
    ray = FakeRay("n1")
    works, _, _ = run(ray, [Actor("a", "n1", node_lost(ray, None))], 6)
    indexed = {p for p, w in works.items() if w.state == "indexed"}
    assert len(indexed) == 2  # the first batch, before the node died
    for path, work in works.items():
        if path not in indexed:
            assert work.state == "failed" and work.transient
            assert work.reason.startswith("no alive cluster node can host a worker (1 CPU)")


def test_capacity_counts_alive_nodes_one_by_one():
    nodes = [
        {"NodeID": "a", "Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
        {"NodeID": "b", "Alive": True, "Resources": {"CPU": 2.0}},
        {"NodeID": "c", "Alive": False, "Resources": {"CPU": 8.0, "GPU": 4.0}},
    ]
    assert capacity(nodes, {"CPU": 1.0, "GPU": 0.0}) == 6
    assert capacity(nodes, {"CPU": 1.0, "GPU": 0.5}) == 2  # GPUs only on a, 2 halves
    assert capacity(nodes, {"CPU": 1.0, "GPU": 1 / 3}) == 3  # float shares round right


def test_asked_for_more_workers_than_the_nodes_hold_the_pool_is_what_they_hold():
    made: list[dict] = []

    class Remote:
        def __init__(self, **options):
            made.append(options)

        def __call__(self, cls):
            return SimpleNamespace(remote=lambda config: object())

    ray = SimpleNamespace(
        cluster_resources=lambda: {"CPU": 3.0},
        nodes=lambda: FakeRay("n1", "n2").nodes() + [{"NodeID": "x", "Alive": False}],
        remote=Remote,
    )
    indexer = ClusterIndexer.__new__(ClusterIndexer)
    indexer.workers, indexer.config = 4, None
    notes: list[str] = []
    actors, need = indexer._pool(ray, files=10, note=notes.append)
    assert len(actors) == 2 and need == {"CPU": 1.0, "GPU": 0.0}
    assert notes == [  # the user asked for 4: said, not silent
        "--cluster-workers 4: the cluster's alive nodes can host 2 workers, so 2 were started"
    ]
