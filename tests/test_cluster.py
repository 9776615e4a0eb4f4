"""Indexing through a real local Ray cluster (a head and a second node, separate processes):
the same files, segments, vectors and answers as a local run; a worker killed mid-batch is
retried elsewhere; a driver killed mid-run leaves an index that answers and completes
(issue 15)."""

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

from searchengine import Engine, clusterpool
from searchengine.engine import QUERY_MODELS
from searchengine.errors import UserError
from searchengine.store.catalog import files, segments
from tests.conftest import run_cli, write_corpus

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


def build(root: Path, where: Path, models, cluster: str | None = None, exports: Path | None = None):
    """An index run; `exports`: an index whose ONNX query exports (made from the same
    weights) are copied in first, which saves each cluster test the export's half minute."""
    flags, checkpoint = models
    with Engine(where, create=True, models=flags, clip_pretrained=checkpoint) as eng:
        if exports is not None and not (where / QUERY_MODELS).exists():
            shutil.copytree(exports / QUERY_MODELS, where / QUERY_MODELS)
        return eng.index([root], cluster=cluster, cluster_workers=2 if cluster else None)


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
def reference(media, tmp_path_factory):
    root, models = media
    index = tmp_path_factory.mktemp("local") / "index"
    summary = build(root, index, models)
    assert summary.added == 18 and summary.failed == 1  # the broken image, with its reason
    return snapshot(index, root), index


def test_cluster_run_equals_a_local_run_though_a_worker_is_killed(
    cluster, media, reference, tmp_path, monkeypatch
):
    """One run proves both (each full build costs seconds here): the first worker to start
    decoding its third file dies (SIGKILL, once); its batch goes to the other node."""
    root, models = media
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("SEARCHENGINE_WORKER_CRASH_AT", "decode-started:3")
    monkeypatch.setenv("SEARCHENGINE_WORKER_CRASH_ONCE", str(marker))
    summary = build(root, tmp_path / "index", models, cluster.address, exports=reference[1])
    assert marker.exists()  # a worker really was killed
    assert (summary.added, summary.failed) == (18, 1)
    assert not ray.is_initialized()  # the run closed the connection it made
    ours = snapshot(tmp_path / "index", root)
    same(ours, reference[0])
    assert {r[0] for r in ours[0] if r[1] == "failed"} == {"broken.jpg"}
    assert {s[0] for s in ours[1] if s[1] == "clap"} == {"hum.wav"}
    # the workers' weights are recorded as a local run records the driver's
    assert identities(tmp_path / "index") == identities(reference[1]) != {}


def test_a_worker_that_keeps_dying_is_restarted_and_stdout_stays_json(
    cluster, media, reference, tmp_path
):
    """One worker, killed at the first file each of its processes starts decoding, 5 times
    in all: more deaths than an actor capped at 3 restarts survives, yet every file is
    indexed (each retried on a restarted worker), and Ray's worker-death messages stay off
    stdout, which holds only the --json summary. (Counted deaths, not "every second file":
    with batches queued ahead, which file comes second depends on timing.)"""
    root = tmp_path / "two"
    root.mkdir()
    for i in (1, 2):
        (root / f"doc{i}.txt").write_text(f"document {i} on planets and moons", encoding="utf-8")
    flags, checkpoint = media[1]
    index = tmp_path / "index"
    with Engine(index, create=True, models=flags, clip_pretrained=checkpoint):
        shutil.copytree(reference[1] / QUERY_MODELS, index / QUERY_MODELS)
    res = run_cli(
        "index", str(root), "--index", str(index), "--json",
        "--cluster", cluster.address, "--cluster-workers", "1",
        env={
            "SEARCHENGINE_WORKER_CRASH_AT": "decode-started:1",
            "SEARCHENGINE_WORKER_CRASH_ONCE": str(tmp_path / "death"),
            "SEARCHENGINE_WORKER_CRASH_TIMES": "5",
        },
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert (summary["added"], summary["failed"]) == (2, 0), summary["problems"]
    assert len(list(tmp_path.glob("death*"))) == 5  # the worker really died 5 times


def test_a_killed_driver_leaves_an_index_that_answers_and_completes(
    cluster, media, reference, tmp_path
):
    root, (flags, checkpoint) = media
    index = tmp_path / "index"
    args = ["--clip", flags["clip"], "--clip-pretrained", checkpoint, "--clap", flags["clap"]]
    res = run_cli(
        "index", str(root), "--index", str(index), "--speech", "off", *args,
        "--cluster", cluster.address, "--cluster-workers", "2",
        env={"SEARCHENGINE_CRASH_AT": "batch-committed:1"},
    )
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    with Engine(index, readonly=True) as eng:  # opens and answers before any repair
        committed = eng.catalog.all_files()
        assert 0 < len(committed) < 18  # one batch in, one lost
        assert eng.search("planets and moons", k=5) is not None
    summary = build(root, index, (flags, checkpoint), cluster.address, exports=reference[1])
    assert summary.added == 18 - len(committed)
    same(snapshot(index, root), reference[0])


def test_a_node_lost_mid_run_shrinks_the_pool_and_the_run_completes(
    cluster, media, reference, tmp_path, monkeypatch
):
    """The second node is killed (SIGKILL, all its processes) as the first batch commits.
    Its worker cannot restart anywhere (the head's one CPU is taken), so the pool shrinks to
    the head's worker, which does every file left; the index equals a local run. Runs after
    the tests that need two nodes: the node is not added back."""
    root, (flags, checkpoint) = media
    monkeypatch.setattr(clusterpool, "BATCH_FILES", 2)  # 9 batches: most still to send
    second = next(iter(cluster.worker_nodes))
    killed: list[float] = []

    def progress(phase: str, done: int, total: int, path: str) -> None:
        if phase == "embed" and done and not killed:
            cluster.remove_node(second, allow_graceful=False)
            killed.append(time.monotonic())
            while any(n["Alive"] for n in ray.nodes() if n["NodeID"] == second.node_id):
                assert time.monotonic() - killed[0] < 30, "Ray never saw the node die"
                time.sleep(0.1)  # the pool learns it from Ray, as it would in real life

    index = tmp_path / "index"
    with Engine(index, create=True, models=flags, clip_pretrained=checkpoint) as eng:
        shutil.copytree(reference[1] / QUERY_MODELS, index / QUERY_MODELS)
        summary = eng.index([root], progress, cluster=cluster.address, cluster_workers=2)
    assert killed and (summary.added, summary.failed) == (18, 1)
    assert any("the pool went from 2 to 1" in note for note in summary.notes), summary.notes
    same(snapshot(index, root), reference[0])


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
