"""`searchengine watch`: events become debounced batches of folders, a real watcher keeps an
index current (create, edit, rename, delete, folders), survives SIGKILL mid-batch, and falls
back to rescans where inotify watches run out."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from watchdog.events import (
    DirDeletedEvent,
    DirModifiedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from searchengine import watch
from searchengine.errors import UserError
from searchengine.indexer import IndexSummary
from searchengine.watch import Pending, Watcher, collapse, folders_for, targets
from tests.conftest import REPO, TOPICS, run_cli

# ---- events to folders, debouncing ----------------------------------------------------


def test_collapse_keeps_outermost_folders():
    got = collapse(["/r/a/b", "/r/a", "/r/a b", "/r/c/d", "/r/c/d", "/r/a/b/c"])
    assert got == ["/r/a", "/r/a b", "/r/c/d"]


def test_events_map_to_the_folders_to_index():
    roots, idx = ["/r"], ["/r/index"]
    assert folders_for(FileCreatedEvent("/r/a/x.txt"), roots, idx) == ["/r/a"]
    assert folders_for(FileMovedEvent("/r/a/x.txt", "/r/b/y.txt"), roots, idx) == ["/r/a", "/r/b"]
    assert folders_for(FileMovedEvent("/r/a/x.txt", "/elsewhere/x"), roots, idx) == ["/r/a"]
    assert folders_for(DirDeletedEvent("/r/a/sub"), roots, idx) == ["/r/a"]
    assert folders_for(FileModifiedEvent("/r/x.txt"), roots, idx) == ["/r"]
    assert folders_for(FileModifiedEvent("/r/.searchignore"), roots, idx) == ["/r"]
    # what the walk skips, the index's own writes, and reads (the indexer's own) start nothing
    for event in (
        FileModifiedEvent("/r/index/catalog.db"),
        FileCreatedEvent("/r/a/.x.txt.swp"),
        FileCreatedEvent("/r/.git/objects/ab"),
        FileOpenedEvent("/r/a/x.txt"),
        FileClosedNoWriteEvent("/r/a/x.txt"),
        DirModifiedEvent("/r/a"),
    ):
        assert folders_for(event, roots, idx) == [], event
    # a watched root inside a hidden folder is still watched
    assert folders_for(FileCreatedEvent("/h/.notes/x.txt"), ["/h/.notes"], []) == ["/h/.notes"]


def test_targets_climb_to_existing_folders_and_above_ignore_files(tmp_path):
    root = tmp_path / "r"
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    paths, gone = targets([str(root / "a" / "gone" / "deeper"), str(root / "c")], [str(root)])
    assert (paths, gone) == ([str(root / "a"), str(root / "c")], [])
    (root / "a" / ".searchignore").write_text("*.log\n")  # a walk of a/b alone would miss it
    assert targets([str(root / "a" / "b")], [str(root)])[0] == [str(root / "a")]
    shutil.rmtree(root)
    assert targets([str(root / "c")], [str(root)]) == ([], [str(root)])


def test_pending_waits_for_quiet_but_not_forever():
    p = Pending(debounce_s=1.0, max_delay_s=5.0)
    assert p.due_in(0.0) is None
    p.add(["/r/a"], now=0.0)
    assert p.due_in(0.5) == pytest.approx(0.5)
    for t in (0.8, 1.6, 2.4, 3.2, 4.0, 4.8):  # a steady stream of events
        p.add(["/r/b"], now=t)
    assert p.due_in(4.8) == pytest.approx(0.2)  # the longest delay caps the wait
    assert p.due_in(6.0) == 0
    assert p.take() == ["/r/a", "/r/b"]
    assert p.due_in(6.0) is None


# ---- the watcher with a stand-in engine: fallback and retries ----------------------------


class FakeEngine:
    """Records index runs; `fail` makes the next runs raise."""

    def __init__(self, index_dir: Path) -> None:
        self.dir = index_dir
        self.runs: list[list[str]] = []
        self.fail: list[Exception] = []

    def index(self, paths):
        self.runs.append(list(paths))
        if self.fail:
            raise self.fail.pop(0)
        return IndexSummary(added=1)


def run_in_thread(watcher: Watcher) -> threading.Thread:
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    return thread


def wait_for(check: Callable[[], object], timeout: float = 60.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise AssertionError(f"not seen within {timeout:g}s")


def test_watch_limit_error_falls_back_to_rescans(tmp_path, monkeypatch):
    def no_watches(*_a, **_k):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watch.Observer, "schedule", no_watches)
    engine = FakeEngine(tmp_path / "index")
    said: list[str] = []
    watcher = Watcher(engine, [tmp_path], say=said.append, interval_s=0.2)
    thread = run_in_thread(watcher)
    wait_for(lambda: len(engine.runs) >= 3)  # the first run, then rescans
    watcher.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert watcher.observer is None and watcher.polling
    assert all(run == [str(tmp_path)] for run in engine.runs)
    assert len(said) == 1 and said[0].startswith("the inotify watch limit is reached")
    assert said[0].endswith("rescanning every 0.2s instead")


def test_watches_at_the_user_limit_fall_back(tmp_path, monkeypatch):
    """Watchdog skips subfolders it cannot watch without a word: the count decides."""
    monkeypatch.setattr(watch, "inotify_limit", lambda: 1)
    engine = FakeEngine(tmp_path / "index")
    said: list[str] = []
    watcher = Watcher(engine, [tmp_path], say=said.append, interval_s=30)
    thread = run_in_thread(watcher)
    wait_for(lambda: engine.runs)
    watcher.stop()
    thread.join(5)
    assert watcher.polling
    assert said == [
        "the inotify watch limit is reached (fs.inotify.max_user_watches = 1): "
        "rescanning every 30s instead"
    ]


def test_a_removed_root_is_rescanned_then_watched_again(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    engine = FakeEngine(tmp_path / "index")
    said: list[str] = []
    watcher = Watcher(engine, [docs], say=said.append, interval_s=0.2)
    thread = run_in_thread(watcher)
    wait_for(lambda: engine.runs and watcher.observer is not None)
    docs.rmdir()
    wait_for(lambda: any("is gone" in line for line in said), 10)
    assert watcher.observer is None and watcher.polling
    docs.mkdir()
    wait_for(lambda: watcher.observer is not None, 10)
    watcher.stop()
    thread.join(5)
    assert said[0] == f"{docs} was removed: rescanning every 0.2s instead"
    assert said[1].startswith(f"{docs} is gone: its files stay in the index")
    assert said[2:] == ["watching with inotify again"]


def test_lost_events_rescan_the_roots(tmp_path):
    import logging

    (tmp_path / "docs").mkdir()
    engine = FakeEngine(tmp_path / "index")
    said: list[str] = []
    watcher = Watcher(engine, [tmp_path / "docs"], say=said.append, debounce_s=0.05)
    thread = run_in_thread(watcher)
    wait_for(lambda: engine.runs and watcher.observer is not None)
    # what watchdog logs (and all it does) when the kernel's event queue overflows
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    wait_for(lambda: len(engine.runs) >= 2)
    watcher.stop()
    thread.join(5)
    assert engine.runs[1] == [str(tmp_path / "docs")]
    assert said == ["some file events were lost (inotify queue overflow): rescanning"]


def test_failed_batch_is_retried_and_said_once(tmp_path, monkeypatch):
    monkeypatch.setattr(watch, "RETRY_S", 0.1)
    docs = tmp_path / "docs"
    (docs / "a").mkdir(parents=True)
    engine = FakeEngine(tmp_path / "index")
    said: list[str] = []
    watcher = Watcher(engine, [docs], say=said.append, debounce_s=0.05)
    thread = run_in_thread(watcher)
    wait_for(lambda: engine.runs)
    busy = UserError("another searchengine process is writing to the index")
    engine.fail = [busy, busy]
    (docs / "a" / "x.txt").write_text("hello")
    wait_for(lambda: len(engine.runs) >= 4)  # two refusals, then the batch goes through
    watcher.stop()
    thread.join(5)
    assert engine.runs[1:4] == [[str(docs / "a")]] * 3
    assert said == [f"{busy}; will retry"]


def test_a_single_file_can_be_watched(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    engine = FakeEngine(tmp_path / "index")
    watcher = Watcher(engine, [tmp_path / "a.txt"], debounce_s=0.05)
    thread = run_in_thread(watcher)
    wait_for(lambda: engine.runs and watcher.observer is not None)
    (tmp_path / "b.txt").write_text("a neighbour: not watched")
    (tmp_path / "a.txt").write_text("two")
    wait_for(lambda: len(engine.runs) >= 2)
    time.sleep(0.3)
    watcher.stop()
    thread.join(5)
    assert engine.runs == [[str(tmp_path / "a.txt")]] * 2


def test_a_missing_root_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        Watcher(FakeEngine(tmp_path / "index"), [tmp_path / "nope"])


# ---- end to end: a real watcher process ------------------------------------------------


@pytest.fixture(scope="module")
def seeded_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index with nothing in it but its query encoder export, made once (the export is the
    slow part of a first run); each test copies it."""
    base = tmp_path_factory.mktemp("seed")
    (base / "empty").mkdir()
    res = run_cli("index", str(base / "empty"), "--index", str(base / "index"))
    assert res.returncode == 0, res.stderr
    return base / "index"


def fresh_index(seed: Path, where: Path) -> Path:
    shutil.copytree(seed, where)  # times kept: the export is found without hashing
    return where


class WatchProcess:
    """`searchengine watch --json` in a child process; its lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "searchengine.cli", "watch", *args, "--json"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.batches: list[dict] = []
        self.notices: list[str] = []
        for stream, sink in ((self.proc.stdout, self.batches), (self.proc.stderr, self.notices)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    def _read(self, stream, sink: list) -> None:
        for line in stream:
            sink.append(json.loads(line) if sink is self.batches else line.rstrip("\n"))

    def wait_ready(self) -> None:
        wait_for(lambda: any(n.startswith("watching ") for n in self.notices) or self.died(), 180)
        assert not self.died(), self.notices

    def died(self) -> bool:
        return self.proc.poll() is not None

    def wait_batch(self, since: int, **counts: int) -> None:
        """Until the batches after `since` add up to at least `counts`."""

        def seen() -> bool:
            later = self.batches[since:]
            return all(sum(b[k] for b in later) >= n for k, n in counts.items())

        wait_for(lambda: seen() or self.died(), 60)
        assert not self.died(), self.notices

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def search(index: Path, query: str) -> list[dict]:
    res = run_cli("search", query, "--index", str(index), "--json", "-k", "3")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def top_names(index: Path, query: str) -> list[str]:
    return [Path(h["path"]).name for h in search(index, query)]


def follow_edits(w: WatchProcess, docs: Path, index: Path) -> float:
    """Create, edit, rename and delete files and a folder under a running watcher, checking
    each change with `search` from another process; seconds from a write to its batch."""
    assert w.batches[0]["initial"] and w.batches[0]["added"] == 2
    # searches in other processes work while the watcher holds the index
    assert top_names(index, "planting tomatoes after the frost")[0] == "garden.md"

    n, started = len(w.batches), time.monotonic()
    (docs / "notes.txt").write_text("Baking sourdough bread with rye flour and a starter.")
    w.wait_batch(n, added=1)
    took = time.monotonic() - started
    assert top_names(index, "baking sourdough bread")[0] == "notes.txt"

    n = len(w.batches)
    (docs / "notes.txt").write_text("Repairing a bicycle puncture with a patch kit.")
    w.wait_batch(n, changed=1)
    hit = search(index, "fixing a flat bicycle tyre")[0]
    assert Path(hit["path"]).name == "notes.txt"
    assert "bicycle" in hit["segments"][0]["text"]

    n = len(w.batches)
    (docs / "notes.txt").rename(docs / "bike.txt")  # found by hash: vectors kept
    w.wait_batch(n, moved=1)
    assert sum(b["added"] + b["changed"] for b in w.batches[n:]) == 0
    assert "bike.txt" in top_names(index, "fixing a flat bicycle tyre")

    n = len(w.batches)
    (docs / "kitchen" / "breakfast").mkdir(parents=True)
    (docs / "kitchen" / "breakfast" / "pancakes.txt").write_text(TOPICS["recipe.html"])
    w.wait_batch(n, added=1)
    n = len(w.batches)
    shutil.rmtree(docs / "kitchen")  # a deleted folder's files are forgotten
    (docs / "astronomy.rst").unlink()
    w.wait_batch(n, deleted=2)

    status = run_cli("status", "--index", str(index), "--json")
    assert json.loads(status.stdout)["files"] == 2
    assert set(top_names(index, "pancakes")) == {"garden.md", "bike.txt"}
    return took


def write_logs(folder: Path, total: int) -> Path:
    folder.mkdir(exist_ok=True)
    for i in range(total):
        body = "\n\n".join(
            f"Log {i}, entry {p}: the weather station {i} measured {i * 3 + p} mm of rain "
            f"and wind from bearing {(i * 37 + p) % 360} degrees."
            for p in range(4)
        )
        (folder / f"log{i:03d}.txt").write_text(body)
    return folder


def catalog_rows(index: Path, like: str = "%") -> set[tuple]:
    """(name, type, state, sha, segments) of the files whose name is LIKE `like`."""
    with sqlite3.connect(f"file:{index / 'catalog.db'}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute(
            "SELECT f.path, f.type, f.state, f.sha, count(s.id) FROM files f "
            "LEFT JOIN segments s ON s.file_id = f.id WHERE f.path LIKE ? GROUP BY f.id",
            (f"%/{like}",),
        ).fetchall()
    return {(Path(p).name, *rest) for p, *rest in rows}


def logs_so_far(index: Path) -> int:
    try:
        return len(catalog_rows(index, "log%"))
    except sqlite3.Error:
        return -1


def test_watch_end_to_end(tmp_path, seeded_index):
    """A real watcher follows edits; killed with SIGKILL mid-batch, the next `watch` completes
    the work (the same files and segments as a clean `index` run); SIGTERM stops it."""
    total = 48  # more than one commit's worth of files (the indexer commits every 32)
    clean = fresh_index(seeded_index, tmp_path / "clean")
    ref_logs = write_logs(tmp_path / "ref", total)
    reference = subprocess.Popen(  # a clean run over the same logs, meanwhile
        [sys.executable, "-m", "searchengine.cli", "index", str(ref_logs), "--index", str(clean)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("garden.md", "astronomy.rst"):
        (docs / name).write_text(TOPICS[name])
    index = fresh_index(seeded_index, tmp_path / "index")
    args = (str(docs), "--index", str(index), "--debounce", "0.3")

    w = WatchProcess(*args)
    try:
        w.wait_ready()
        took = follow_edits(w, docs, index)
        write_logs(docs, total)
        wait_for(lambda: logs_so_far(index) > 0 or w.died(), 120, every=0.02)
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait()
        had = logs_so_far(index)
    finally:
        w.kill()
    assert 0 < had < total, "the kill did not land mid-batch"

    again = WatchProcess(*args)
    try:
        again.wait_ready()
        assert again.batches[0]["added"] == total - had and again.batches[0]["failed"] == 0
        assert reference.wait(timeout=300) == 0, reference.stderr.read()
        want = catalog_rows(clean)
        assert len(want) == total and all(row[2] == "indexed" for row in want)
        assert catalog_rows(index, "log%") == want
        assert again.stop() == 0
        assert again.notices[-1] == "stopped"
    finally:
        again.kill()
    print(f"a new file was indexed {took:.1f}s after it was written")


def test_readme_documents_watch_and_its_options():
    import re

    import typer

    from searchengine.commands import app

    readme = (REPO / "README.md").read_text()
    usage = re.search(r"^\s+searchengine watch PATH\.\.\. (.*)$", readme, re.M)
    assert usage, "the README's command list has no `searchengine watch` line"
    documented = set(re.findall(r"--[a-z-]+", usage.group(1)))
    command = typer.main.get_command(app).commands["watch"]
    options = {o for p in command.params for o in p.opts if o.startswith("--")}
    assert documented == options
    assert "### Keeping an index current: `watch`" in readme
