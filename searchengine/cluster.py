"""Indexing through a Ray cluster: the driver walks, diffs and commits; workers decode and embed.

Why this split: embedding is the cost and is embarrassingly parallel, while the catalog must
have one writer. The driver (this process) keeps the crawl, the change detection, the
journal and every catalog write (`Indexer._commit`, exactly the local path). New and changed
files go out in batches to a pool of Ray actors; each actor holds one `ModelRegistry`, so
each model loads once per worker process, and runs the same decode and embed code as a local
run (`Indexer._decoded` and `Indexer._embed_batch`). Vectors, segments and reasons come back
as the indexer's own `_Work` records.

Re-embedding after a model change goes the same way where it must decode (a new CLIP or CLAP
model, speech turned on or changed): the driver plans, and commits each batch that comes
back (`Reembedder`, reembed.py); the workers decode and embed (`reembed.Remaker`, the code a
local run uses), a `Remake` (path, spaces, speech flag) out and a `Remade` (segments without
pixels or samples, float32 vectors, speech settings, or why the old vectors stay) back. A
re-embedding the pool gives up on keeps the file's old vectors, with a note, and the next run
tries it again. Stored text of a text model switch is re-embedded on the driver: it needs no
decoding, and its vectors come from the driver's own text model.

Faults (the rules live in `clusterpool`): a worker that dies mid-batch (killed, out of
memory, a decoder crash) is restarted by Ray (`max_restarts`) and its batch is sent again, to
another worker when there is one; so is a batch whose result was lost (object lost, owner
died) or whose node died, or that failed with any other Ray error. A batch that keeps
failing is split into single files, and a file that still fails is recorded as failed with
the reason; an exception in the worker's own code fails its batch only. When a node is lost
the pool shrinks to what the alive nodes can host (a worker restarting with no free CPU
would wait for ever), and with no node able to host one the files left fail as transient.
A driver killed mid-run leaves committed batches committed (one transaction each); the next
run finds the rest unchanged-on-disk but missing from the catalog and does them.

Workers read files at the driver's paths (one machine, or a shared file system) and find
model weights from the index's model settings; a worker without a model leaves the files
pending with its reason, as a local run does."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from searchengine.clusterpool import Item, Pool, capacity
from searchengine.crawler import display_path
from searchengine.encoders.identity import HashMemo, identity
from searchengine.encoders.registry import SPACES, ModelRegistry, _driver
from searchengine.errors import UserError
from searchengine.indexer import (
    SAVE_EVERY_S,
    Indexer,
    IndexSummary,
    ProgressFn,
    _Work,
    decode_timeout,
)
from searchengine.reembed import Remade, Remake, Remaker, Remote

if TYPE_CHECKING:
    from pathlib import Path

    from searchengine.config import IndexConfig
    from searchengine.store.store import Store

NO_RAY = "--cluster needs Ray: pip install 'searchengine[cluster]'"
CONNECT_TIMEOUT_S = 5.0
FORWARDED = ("SEARCHENGINE_OFFLINE", "SEARCHENGINE_DECODE_TIMEOUT", "HF_HOME", "XDG_CACHE_HOME")
"""Driver settings the workers get (where weights are looked up, time limits)."""


def connect(address: str) -> bool:
    """Join the Ray cluster at `address` ('auto', 'ray://HOST:PORT' or 'HOST:PORT'); True
    when this call started the connection (the caller then shuts it down)."""
    try:
        import ray
    except ImportError:
        raise UserError(NO_RAY) from None
    if ray.is_initialized():
        return False
    _check_reachable(address)
    env = {k: os.environ[k] for k in FORWARDED if k in os.environ}
    # kill tests: a crash point meant for the workers, not for this process
    for name in ("CRASH_AT", "CRASH_ONCE", "CRASH_TIMES"):
        value = os.environ.get(f"SEARCHENGINE_WORKER_{name}")
        if value:
            env[f"SEARCHENGINE_{name}"] = value
    try:
        ray.init(
            address=address,
            runtime_env={"env_vars": env} if env else None,
            logging_level="ERROR",
            log_to_driver=False,
            configure_logging=True,
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"cannot reach the Ray cluster at '{address}': {first}") from None
    return True


def _check_reachable(address: str) -> None:
    """Fail in seconds, with one line, where ray.init would retry for minutes."""
    if address == "auto":
        return  # ray.init("auto") itself fails at once when no local cluster runs
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--cluster wants ray://HOST:PORT, HOST:PORT or 'auto', not '{address}'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UserError(f"cannot reach the Ray cluster at '{address}': {why}") from None


class RemoteEmbedder(Indexer):
    """The decode and embed half of an Indexer, with no store: what a worker runs."""

    def __init__(self, config: IndexConfig) -> None:  # no super(): there is no catalog here
        self.config = config
        self.models = ModelRegistry(config)
        self.decode_timeout_s = decode_timeout()
        self.journal = None
        self.attempts = {}
        self.retry_next = 0
        self._memo = HashMemo(None)  # file hashes, in memory: each model file hashed once
        self.remaker = Remaker(self.models, config, self._transcribe, limit_s=self.decode_timeout_s)

    def identities(self) -> dict[str, str]:
        """The content identity of each model this worker loaded (issue 10: a model is its
        weights), so the driver records what really made the vectors."""
        out: dict[str, str] = {}
        for space in SPACES:
            if self.models.loaded(space):
                try:
                    resolved = self.models.resolve(space)
                    descriptor, files = _driver(space).describe(self.config, resolved)
                    out[space] = identity(space, descriptor, files, self._memo)
                except (OSError, ValueError):
                    continue
        return out

    def run_batch(self, items: list[Item]) -> tuple[list[_Work], list[str], dict[str, str]]:
        """Decode and embed `items`; the records (pixels and streams dropped), the notes and
        the identities of the models used."""
        summary = IndexSummary()
        works = list(self._decoded(items))
        self._embed_batch(works, summary)
        for work in works:
            if work.decoded is not None:
                work.decoded.stream = None
                work.decoded.speech_source = None
                for seg in work.decoded.segments:
                    seg.payload = None
        return works, summary.notes, self.identities()

    def redo_batch(self, jobs: list[Remake]) -> tuple[list[Remade], list[str], dict[str, str]]:
        """Decode `jobs` again and embed their stale spaces (re-embedding after a model
        change); the results, the notes and the identities of the models used."""
        summary = IndexSummary()
        done = [self.remaker.remake(job, summary) for job in jobs]
        return done, summary.notes, self.identities()


class _Actor:
    """A Ray actor around a RemoteEmbedder (created with ray.remote in `_pool`)."""

    def __init__(self, config: IndexConfig) -> None:
        self.embedder = RemoteEmbedder(config)

    def run_batch(self, items: list[Item]) -> tuple[list[_Work], list[str], dict[str, str], str]:
        """The embedder's records, notes and identities, and this worker's node (the pool
        ends workers on dead nodes first)."""
        import ray

        return (*self.embedder.run_batch(items), ray.get_runtime_context().get_node_id())

    def redo_batch(self, jobs: list[Remake]) -> tuple[list[Remade], list[str], dict[str, str], str]:
        """The embedder's re-embeddings, notes and identities, and this worker's node."""
        import ray

        return (*self.embedder.redo_batch(jobs), ray.get_runtime_context().get_node_id())

    def pid(self) -> int:
        return os.getpid()


@dataclass
class ClusterStats:
    """Where a cluster run's time went (for scripts/bench_cluster.py)."""

    workers: int = 0
    files: int = 0
    redone: int = 0  # files decoded again by the workers for a model change
    batches: int = 0
    retried: int = 0
    commit_s: float = 0.0
    wait_s: float = 0.0
    process_s: float = 0.0
    notes: list[str] = field(default_factory=list)


class ClusterIndexer(Indexer):
    """An Indexer whose new and changed files are decoded and embedded on a Ray cluster."""

    def __init__(
        self,
        store: Store,
        models: ModelRegistry,
        config: IndexConfig,
        index_dir: Path,
        *,
        address: str,
        workers: int | None = None,
    ) -> None:
        super().__init__(store, models, config, index_dir)
        self.address = address
        self.workers = workers
        self.stats = ClusterStats()
        self.made_by: dict[str, str] = {}  # space -> identity of the workers' weights

    def run(self, *args: Any, **kwargs: Any) -> IndexSummary:
        # Ray prints worker deaths and other cluster messages on stdout: they go to stderr,
        # so that stdout keeps only what the command prints (`index --json`)
        with contextlib.redirect_stdout(sys.stderr):
            return self._run(*args, **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> IndexSummary:
        started = connect(self.address)
        try:
            return super().run(*args, **kwargs)
        finally:
            if started:
                import ray

                ray.shutdown()

    def _process(self, todo: list[Item], summary: IndexSummary, report: ProgressFn) -> None:
        if not todo:
            return
        began = time.monotonic()
        pool = self._open_pool(todo, summary)
        done, total = 0, len(todo)
        last_save = time.monotonic()
        report("embed", 0, total, "")
        try:
            for works, notes, made in pool.results(todo):
                self._accept(notes, made, summary, lambda w=works: self._commit(w, summary))
                done += len(works)
                self.stats.files += len(works)
                report("embed", done, total, display_path(works[-1].entry.path))
                if time.monotonic() - last_save > SAVE_EVERY_S:
                    self.store.sync(SPACES, rebuild=False)
                    last_save = time.monotonic()
        finally:
            self._closed(pool, began)
        report("embed", done, total, "")

    def _remote_redo(self) -> Remote | None:
        return self._redo_on_cluster

    def _redo_on_cluster(
        self, jobs: list[Remake], summary: IndexSummary, take: Callable[[list[Remade]], None]
    ) -> None:
        """Re-embeddings that decode, on the cluster: each batch that comes back goes to
        `take` (the Reembedder, which commits it); a file the pool gives up keeps its old
        vectors."""
        began = time.monotonic()
        pool = self._open_pool(
            jobs, summary, method="redo_batch", give_up=_kept, size=lambda job: job.size
        )
        try:
            for remade, notes, made in pool.results(jobs):
                self._accept(notes, made, summary, lambda r=remade: take(r))
        finally:
            self._closed(pool, began)
            self.stats.redone += pool.answered_items

    def _open_pool(self, items: list[Any], summary: IndexSummary, **options: Any) -> Pool:
        """Workers for `items` (indexing or re-embedding: `options` says which, see Pool)."""
        import ray

        pool = Pool(ray, *self._pool(ray, len(items), summary.note), note=summary.note, **options)
        self.stats.workers = max(self.stats.workers, len(pool.actors))
        return pool

    def _accept(
        self, notes: list[str], made: dict[str, str], summary: IndexSummary,
        commit: Callable[[], None],
    ) -> None:  # fmt: skip
        """A batch the workers answered: its notes and the workers' model identities
        recorded, then `commit` (timed: the single writer's share of the run)."""
        for line in notes:
            summary.note(line)
        self._made_by(made, summary)
        t0 = time.monotonic()
        commit()
        self.stats.commit_s += time.monotonic() - t0

    def _closed(self, pool: Pool, began: float) -> None:
        """End a pool's workers and add its counts to the run's stats."""
        pool.close()
        self.stats.batches += pool.sent
        self.stats.retried += pool.retried
        self.stats.wait_s += pool.wait_s
        self.stats.process_s += time.monotonic() - began

    def _made_by(self, made: dict[str, str], summary: IndexSummary) -> None:
        """Remember which weights the workers used; workers that disagree are a note."""
        for space, ident in made.items():
            first = self.made_by.setdefault(space, ident)
            if first != ident:
                summary.note(
                    f"cluster workers hold different {space} weights for the same model "
                    f"setting ({first[:12]}, {ident[:12]}): give every worker the same files"
                )

    def _record_identities(self) -> None:
        """The driver's own models (stored text re-embedded here) and the workers' models."""
        super()._record_identities()
        for space, ident in self.made_by.items():
            self.catalog.record_model_identity(space, self.config.model_key(space), ident)

    def _pool(
        self, ray: Any, files: int, note: Callable[[str], None]
    ) -> tuple[list[Any], dict[str, float]]:
        """One actor per CPU of the cluster (or `workers`), never more than files nor than
        the alive nodes can host (an actor without room would wait for ever); the actors
        and what each takes."""
        resources = ray.cluster_resources()
        wanted = self.workers or max(1, int(resources.get("CPU", 1)))
        wanted = max(1, min(wanted, files))
        options = actor_options(resources, wanted)
        room = capacity(ray.nodes(), _need(options))
        if 0 < room < wanted:
            if self.workers and self.workers > room:
                note(
                    f"--cluster-workers {self.workers}: the cluster's alive nodes can host "
                    f"{room} workers, so {room} were started"
                )
            wanted = room
            options = actor_options(resources, wanted)
        remote = ray.remote(**options)(_Actor)
        return [remote.remote(self.config) for _ in range(wanted)], _need(options)


def _kept(job: Remake, why: str, transient: bool) -> Remade:
    """A re-embedding the pool gave up: the file keeps its old vectors (retried next run)."""
    return Remade(job.file_id, kept=f"kept the old vectors of {job.path}: {why}")


def actor_options(resources: dict[str, float], actors: int) -> dict[str, Any]:
    """Ray options of the worker actors: one CPU each, and torch, FAISS and the decoders on
    one thread (`SEARCHENGINE_THREADS=1`; without it each actor would use every core of its
    node, and N actors on a node would fight over them). Where the cluster has GPUs, each
    actor also takes an equal share of them (a whole one at most) and its encoders run on
    CUDA (`SEARCHENGINE_DEVICE=cuda`, see encoders.base.torch_device)."""
    # restarts unbounded: TRIES per batch and file bound the retries (see TRIES)
    options: dict[str, Any] = {"num_cpus": 1, "max_restarts": -1, "max_task_retries": 0}
    env = {"SEARCHENGINE_THREADS": "1"}
    gpus = float(resources.get("GPU", 0) or 0)
    if gpus > 0:
        options["num_gpus"] = min(1.0, gpus / max(1, actors))
        env["SEARCHENGINE_DEVICE"] = "cuda"
    options["runtime_env"] = {"env_vars": env}
    return options


def _need(options: dict[str, Any]) -> dict[str, float]:
    """What one actor takes, as `clusterpool.capacity` counts it."""
    return {"CPU": float(options["num_cpus"]), "GPU": float(options.get("num_gpus", 0))}
