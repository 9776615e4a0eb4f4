"""SIGKILL during `index` at several points: the index still opens and answers, and the next
run completes it with nothing lost and nothing duplicated."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from searchengine import Engine
from searchengine.store.catalog import files, segments
from tests.conftest import REPO, run_cli

SUBJECTS = [
    "harbour cranes",
    "violin lessons",
    "glacier hiking",
    "bread baking",
    "tax forms",
    "chess openings",
    "bee keeping",
    "train timetables",
    "solar panels",
    "pottery",
]


def make_corpus(root: Path, n: int = 70) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        body = "\n\n".join(
            f"Report {i}, part {p}: observations about {subject} recorded in week {i + p}. "
            f"The {subject} notes mention item {i * 7 + p} and reference number R{i:03d}{p}."
            for p in range(6)
        )
        (root / f"doc{i:03d}.txt").write_text(body)
    return root


def snapshot(index: Path) -> tuple[int, int, int, int, list[str]]:
    """(files, indexed files, segments, FAISS vectors, top paths for a query)."""
    with Engine(index) as eng:
        with eng.catalog.engine.connect() as conn:
            n_files = conn.execute(select(func.count()).select_from(files)).scalar()
            n_indexed = conn.execute(
                select(func.count()).select_from(files).where(files.c.state == "indexed")
            ).scalar()
            n_segs = conn.execute(select(func.count()).select_from(segments)).scalar()
            dup = conn.execute(
                select(segments.c.file_id, segments.c.start, func.count())
                .group_by(segments.c.file_id, segments.c.start)
                .having(func.count() > 1)
            ).all()
            assert dup == []  # no chunk stored twice
        faiss_ids = eng.vectors("text").ids()
        assert len(set(faiss_ids.tolist())) == len(faiss_ids)
        top = [Path(h.path).name for h in eng.search("glacier hiking week", k=5)]
    return n_files, n_indexed, n_segs, len(faiss_ids), top


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple]:
    root = make_corpus(tmp_path_factory.mktemp("ref") / "docs")
    index = root.parent / "index"
    res = run_cli("index", str(root), "--index", str(index))
    assert res.returncode == 0, res.stderr
    return root, snapshot(index)


@pytest.mark.parametrize(
    "crash_at",
    [
        "file-written:5",  # inside the first batch's transaction
        "batch-committed:1",  # after a commit, before the FAISS files exist
        "vectors-written:1",  # FAISS temp file written, not yet renamed
        "file-written:40",  # inside the second batch
    ],
)
def test_kill_at_crash_point_then_resume(tmp_path, reference, crash_at):
    ref_root, ref = reference
    root = make_corpus(tmp_path / "docs")
    index = tmp_path / "index"
    killed = run_cli(
        "index", str(root), "--index", str(index), env={"SEARCHENGINE_CRASH_AT": crash_at}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    check_resumes(root, index, ref)


def indexed_so_far(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'catalog.db'}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return -1


@pytest.mark.parametrize("files_before_kill", [0, 1])
def test_kill_while_running_then_resume(tmp_path, reference, files_before_kill):
    """SIGKILL from outside at a moment chosen by watching progress, not by a crash point."""
    _, ref = reference
    root = make_corpus(tmp_path / "docs")
    index = tmp_path / "index"
    proc = subprocess.Popen(
        [sys.executable, "-m", "searchengine.cli", "index", str(root), "--index", str(index)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while indexed_so_far(index) < files_before_kill and time.monotonic() < deadline:
        assert proc.poll() is None, "indexing ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    check_resumes(root, index, ref)


def check_resumes(root: Path, index: Path, ref: tuple) -> None:
    if (index / "catalog.db").exists():
        with Engine(index) as eng:  # the half-built index opens and answers
            eng.search("bread baking", k=3)
            eng.status()
    with Engine(index, create=True) as eng:  # the next run completes it
        summary = eng.index([root])
        assert summary.failed == 0
    got = snapshot(index)
    assert got[:4] == ref[:4]  # same files, all indexed, same segments, same vectors
    assert got[4] == ref[4]  # and the same answers
    with Engine(index) as eng:
        assert eng.index([root]).unchanged == 70
