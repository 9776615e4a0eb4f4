"""Indexing through a real local Ray cluster (a head and a second node, separate processes):
the same files, segments, vectors and answers as a local run; a worker killed mid-batch is
retried elsewhere; a worker that keeps dying is restarted; a driver killed mid-run leaves an
index that answers and completes; a node killed mid-run shrinks the pool and the run
completes; a model switch decodes the files again on the workers, not on the driver (issue
15). Each cluster run costs seconds of worker start-up (a process, torch, the text model),
so one run proves several things where it can. The fault rules for every Ray error are
tested without a cluster in test_clusterpool.py."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import ray  # noqa: E402  (the test install has it: searchengine[cluster])
from PIL import Image
from sqlalchemy import select

from searchengine import Engine, clusterpool, reembed
from searchengine.cluster import ClusterIndexer
from searchengine.errors import UserError
from searchengine.indexer import Indexer
from searchengine.store.catalog import files, segments
from tests.conftest import run_cli, write_corpus
from tests.test_crash_cli import perturbed_checkpoint

QUERIES = ["planets and moons", "a red swatch", "a low hum"]
MB = 1 << 20


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node, one CPU and 100 MB of object store each. A node whose
    processes are killed is known dead in about 1.5 s (3 failed health checks 0.5 s apart;
    Ray's default takes tens of seconds), with a 3 s answer limit per check, so a node
    slowed by a loaded machine is not taken for dead."""
    from ray.cluster_utils import Cluster

    small = {"num_cpus": 1, "object_store_memory": 100 * MB}
    checks = {
        "health_check_period_ms": 500,
        "health_check_timeout_ms": 3000,
        "health_check_failure_threshold": 3,
    }
    head = {**small, "include_dashboard": False, "_system_config": checks}
    nodes = Cluster(initialize_head=True, head_node_args=head)
    try:
        nodes.add_node(**small)
        yield nodes
    finally:
        if ray.is_initialized():
            ray.shutdown()
        nodes.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory, test_models) -> tuple[Path, tuple[str, ...]]:
    """18 files (two cluster batches): text, images, a short sound and a broken image."""
    root = write_corpus(tmp_path_factory.mktemp("cluster") / "media")
    for i in range(10):
        colour = ((i * 53) % 256, (i * 97) % 256, (i * 31) % 256)
        Image.new("RGB", (40, 30), colour).save(root / f"swatch{i:02d}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    t = np.arange(32_000) / 16_000
    with wave.open(str(root / "hum.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes((0.3 * np.sin(2 * np.pi * 110 * t) * 32767).astype(np.int16).tobytes())
    flags = {
        "clip": str(test_models["clip_config"]),
        "clap": str(test_models["clap"]),
        "speech": "off",
    }
    return root, (flags, str(test_models["clip_checkpoint"]))


@pytest.fixture(scope="module", autouse=True)
def no_query_exports():
    """No ONNX export of the query towers after each in-process run: it costs more than the
    run (about 12 s for the text model here) and is tested in test_query_encoders.py. The
    local and cluster indexes then both answer with the full models, so their answers are
    still compared like for like."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Indexer, "_export_query_encoders", lambda self: None)
        yield


def build(
    root: Path, where: Path, models, cluster: str | None = None, *, workers: int = 2,
    progress=None,
):  # fmt: skip
    """An index run, local or through `cluster` with `workers` workers."""
    flags, checkpoint = models
    with Engine(where, create=True, models=flags, clip_pretrained=checkpoint) as eng:
        return eng.index(
            [root], progress, cluster=cluster, cluster_workers=workers if cluster else None
        )


def snapshot(index: Path, root: Path):
    """Files (state, type, reason), segments (span, text) with their vectors, and answers."""
    with Engine(index, readonly=True) as eng:
        with eng.catalog.engine.connect() as conn:
            rows = conn.execute(
                select(files.c.path, files.c.state, files.c.type, files.c.reason)
            ).all()
            segs = conn.execute(
                select(
                    files.c.path, segments.c.space, segments.c.kind, segments.c.start,
                    segments.c.end, segments.c.text, segments.c.vector,
                ).join(files, files.c.id == segments.c.file_id)
            ).all()
        answers = [[Path(h.path).name for h in eng.search(q, k=5)] for q in QUERIES]

    def rel(path: str) -> str:
        return str(Path(path).relative_to(root))

    file_rows = sorted((rel(r.path), r.state, r.type, r.reason) for r in rows)
    seg_rows = sorted(((rel(s[0]), *s[1:6]), s[6]) for s in segs)
    keys = [k for k, _ in seg_rows]
    vectors = np.concatenate([np.frombuffer(v, np.float16).astype(np.float32) for _, v in seg_rows])
    return file_rows, keys, vectors, answers


def identities(index: Path) -> dict[str, str]:
    """The model identities the catalog recorded (issue 10: a model is its content)."""
    with sqlite3.connect(index / "catalog.db") as conn:
        return dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'identity:%'"))


def same(a, b) -> None:
    assert a[0] == b[0]  # files, states, reasons
    assert a[1] == b[1]  # segments
    np.testing.assert_allclose(a[2], b[2], atol=2e-3)  # vectors, float tolerance
    assert a[3] == b[3]  # search answers


@pytest.fixture(scope="module")
def reference(media, tmp_path_factory, no_query_exports):
    root, models = media
    index = tmp_path_factory.mktemp("local") / "index"
    summary = build(root, index, models)
    assert summary.added == 18 and summary.failed == 1  # the broken image, with its reason
    return snapshot(index, root), index


def test_a_worker_that_keeps_dying_is_restarted_and_stdout_stays_json(cluster, media, tmp_path):
    """One worker, killed at the first file each of its processes starts decoding, 4 times
    in all: more deaths than an actor capped at 3 restarts survives, yet every file is
    indexed (each retried on a restarted worker), and Ray's worker-death messages stay off
    stdout, which holds only the --json summary. (Counted deaths, not "every second file":
    with batches queued ahead, which file comes second depends on timing.)"""
    root = tmp_path / "two"
    root.mkdir()
    for i in (1, 2):  # images: the worker that lives loads tiny CLIP only, not the text model
        Image.new("RGB", (40, 30), (200, 40 * i, 0)).save(root / f"red{i}.png")
    flags, checkpoint = media[1]
    index = tmp_path / "index"
    with Engine(index, create=True, models=flags, clip_pretrained=checkpoint) as eng:
        # the CLIP query export, made here where torch is loaded already, so that the run
        # (a fresh process) does not load torch and CLIP only to export it at the end
        assert eng.models.export_query_encoders(["clip"]) == {"clip": "exported"}
    res = run_cli(
        "index", str(root), "--index", str(index), "--json",
        "--cluster", cluster.address, "--cluster-workers", "1",
        env={
            "SEARCHENGINE_WORKER_CRASH_AT": "decode-started:1",
            "SEARCHENGINE_WORKER_CRASH_ONCE": str(tmp_path / "death"),
            "SEARCHENGINE_WORKER_CRASH_TIMES": "4",
        },
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert (summary["added"], summary["failed"]) == (2, 0), summary["problems"]
    assert len(list(tmp_path.glob("death*"))) == 4  # the worker really died 4 times


def test_a_killed_driver_leaves_an_index_that_answers_and_completes(
    cluster, media, reference, tmp_path
):
    root, (flags, checkpoint) = media
    index = tmp_path / "index"
    args = ["--clip", flags["clip"], "--clip-pretrained", checkpoint, "--clap", flags["clap"]]
    res = run_cli(
        "index", str(root), "--index", str(index), "--speech", "off", *args,
        "--cluster", cluster.address, "--cluster-workers", "1",
        env={"SEARCHENGINE_CRASH_AT": "batch-committed:1"},
    )
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    with Engine(index, readonly=True) as eng:  # opens and answers before any repair
        committed = eng.catalog.all_files()
        assert 0 < len(committed) < 18  # one batch in, one lost
        assert eng.search("planets and moons", k=5) is not None
    summary = build(root, index, (flags, checkpoint), cluster.address, workers=1)
    assert summary.added == 18 - len(committed)
    same(snapshot(index, root), reference[0])


def test_a_model_switch_decodes_again_on_the_workers_and_equals_a_local_switch(
    cluster, media, reference, tmp_path, monkeypatch
):
    """A new CLIP checkpoint over the reference index: through the cluster, the 10 images
    are decoded again and embedded by a worker (3 batches, each committed as it comes back;
    one worker: a second costs seconds of start-up here, and the pool's spreading of batches
    is tested in test_clusterpool.py), the driver decodes nothing, and the index equals the
    same switch done locally from the same copy."""
    root, (flags, checkpoint) = media
    other = str(perturbed_checkpoint(Path(checkpoint), tmp_path / "other.pt"))
    local, remote = tmp_path / "local", tmp_path / "remote"
    shutil.copytree(reference[1], local)
    shutil.copytree(reference[1], remote)
    here = build(root, local, (flags, other))
    assert (here.added, here.changed, here.reembedded) == (0, 0, 10)
    on_driver: list[str] = []
    decode = reembed.decode_file
    monkeypatch.setattr(
        reembed, "decode_file", lambda path, config: on_driver.append(path) or decode(path, config)
    )
    monkeypatch.setattr(clusterpool, "BATCH_FILES", 4)
    runs: list[ClusterIndexer] = []
    run = ClusterIndexer._run
    monkeypatch.setattr(
        ClusterIndexer, "_run", lambda self, *a, **k: runs.append(self) or run(self, *a, **k)
    )
    there = build(root, remote, (flags, other), cluster.address, workers=1)
    assert (there.added, there.changed, there.reembedded) == (0, 0, 10), there.notes
    assert on_driver == [] and runs[0].stats.redone == 10 and runs[0].stats.batches == 3
    assert not any("kept the old vectors" in note for note in there.notes), there.notes
    ours, theirs = snapshot(remote, root), snapshot(local, root)
    same(ours, theirs)
    assert not np.allclose(ours[2], reference[0][2], atol=2e-3)  # the switch did happen
    assert identities(remote) == identities(local) != identities(reference[1])


def test_cluster_run_equals_a_local_run_though_a_worker_and_a_node_are_killed(
    cluster, media, reference, tmp_path, monkeypatch
):
    """One run proves three things (each cluster run costs seconds of worker start-up): the
    first worker to start decoding its third file dies (SIGKILL, once) and its batch is sent
    again; the second node is killed (SIGKILL, all its processes) as the first batch commits,
    and since its worker cannot restart anywhere (the head's one CPU is taken) the pool
    shrinks to the head's worker, which does what is left; and the index still equals a
    local run. Last of the cluster tests: the node is not added back."""
    root, models = media
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("SEARCHENGINE_WORKER_CRASH_AT", "decode-started:3")
    monkeypatch.setenv("SEARCHENGINE_WORKER_CRASH_ONCE", str(marker))
    second = next(iter(cluster.worker_nodes))
    killed: list[float] = []

    def progress(phase: str, done: int, total: int, path: str) -> None:
        if phase == "embed" and done and not killed:  # a batch in, one still out
            cluster.remove_node(second, allow_graceful=False)
            killed.append(time.monotonic())
            while any(n["Alive"] for n in ray.nodes() if n["NodeID"] == second.node_id):
                assert time.monotonic() - killed[0] < 30, "Ray never saw the node die"
                time.sleep(0.1)  # the pool learns of it from Ray, as in real life

    index = tmp_path / "index"
    summary = build(root, index, models, cluster.address, progress=progress)
    assert marker.exists() and killed  # a worker and a node really were killed
    assert (summary.added, summary.failed) == (18, 1)
    assert any("the pool went from 2 to 1" in note for note in summary.notes), summary.notes
    assert not ray.is_initialized()  # the run closed the connection it made
    ours = snapshot(index, root)
    same(ours, reference[0])
    assert {r[0] for r in ours[0] if r[1] == "failed"} == {"broken.jpg"}
    assert {s[0] for s in ours[1] if s[1] == "clap"} == {"hum.wav"}
    # the workers' weights are recorded as a local run records the driver's
    assert identities(index) == identities(reference[1]) != {}


def test_unreachable_cluster_is_one_line(tmp_path, corpus):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run_cli("index", str(corpus), "--index", str(tmp_path / "i"),
                  "--cluster", f"ray://127.0.0.1:{port}", timeout=60)
    assert res.returncode != 0
    assert "cannot reach the Ray cluster" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_without_ray_installed_the_error_says_how(monkeypatch):
    import sys

    from searchengine.cluster import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UserError, match=r"pip install 'searchengine\[cluster\]'"):
        connect("auto")
