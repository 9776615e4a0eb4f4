"""One bad file never stops a run: a model error, a decoder that hangs, or a decoder that
kills the process costs that file (failed, with the reason), never the run or the next one."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from searchengine import Engine
from searchengine import indexer as indexer_module
from searchengine.deadline import DeadlineExceeded, call_with_deadline, ordered_with_deadline
from searchengine.encoders import text as text_encoder
from searchengine.inflight import CRASH_REASON, JOURNAL_NAME, Journal, read_journal
from tests.conftest import REPO, TOPICS, run_cli, write_corpus
from tests.test_bad_input import states

POISON = "POISON pill: the model cannot embed this note about submarines."


@pytest.mark.parametrize("failure", ["raises", "nan"])
def test_embedding_error_fails_only_that_file(tmp_path, index_dir, monkeypatch, failure):
    docs = write_corpus(tmp_path / "docs")
    (docs / "poison.txt").write_text(POISON)
    original = text_encoder.TextEncoder.embed_items
    calls: list[int] = []

    def choking(self, payloads):
        calls.append(len(payloads))
        rows = original(self, payloads)
        if any("POISON" in str(p) for p in payloads):
            if failure == "raises":
                raise RuntimeError("CUDA error: device-side assert triggered\nmore detail")
            rows = np.array(rows, copy=True)
            rows[0, 0] = np.nan
        return rows

    monkeypatch.setattr(text_encoder.TextEncoder, "embed_items", choking)
    with Engine(index_dir, create=True) as eng:
        summary = eng.index([docs])
        got = states(eng)
        assert summary.failed == 1 and summary.added == 7
        state, reason = got["poison.txt"]
        assert state == "failed" and reason.startswith("embedding error: ")
        if failure == "raises":
            assert (
                reason == "embedding error: RuntimeError: CUDA error: device-side assert triggered"
            )
        else:
            assert "not finite" in reason
        assert all(got[name] == ("indexed", None) for name in TOPICS)
        assert len(calls) > 2  # one batch call, then the batch's files one by one
        assert eng.search("Jupiter moons", k=1)[0].path.endswith("astronomy.rst")
        assert "poison.txt" not in {Path(h.path).name for h in eng.search("submarines", k=10)}
        failed = {Path(f["path"]).name: f["reason"] for f in eng.status()["failed"]}
        assert failed == {"poison.txt": reason}
        if failure == "nan":  # the same input gives the same wrong answer: not retried
            calls.clear()
            again = eng.index([docs])
            assert again.unchanged == 7 and again.failed == 0 and calls == []
            return
        # an exception may pass (memory, a busy device): the next runs try again, then stop
        assert any("try them again" in n for n in summary.notes)
        for attempt in (2, 3):
            calls.clear()
            again = eng.index([docs])
            assert again.changed == 1 and again.failed == 1 and calls != []
            meta = eng.catalog.file_meta([f.id for f in eng.catalog.all_files()
                                          if f.path.endswith("poison.txt")])
            assert [m.get("attempts") for m in meta.values()] == [attempt]
        calls.clear()
        again = eng.index([docs])  # three runs tried it: it waits for a change of the file
        assert again.unchanged == 7 and again.failed == 0 and calls == []
        monkeypatch.setattr(text_encoder.TextEncoder, "embed_items", original)
        (docs / "poison.txt").write_text(POISON.replace("POISON", "Harmless"))
        fixed = eng.index([docs])
        assert fixed.changed == 1 and fixed.failed == 0
        assert eng.search("submarines", k=1)[0].path.endswith("poison.txt")


def test_a_failure_that_passes_is_indexed_on_the_next_run(tmp_path, index_dir, monkeypatch):
    """A decode time limit hit under load is retried without any change of the file."""
    docs = write_corpus(tmp_path / "docs", {"slow.txt": "minutes of the lighthouse keepers"})
    slow = threading.Event()
    real = indexer_module.decode_file

    def sometimes_slow(path: str, config):
        if slow.is_set():
            time.sleep(3)
        return real(path, config)

    monkeypatch.setenv("SEARCHENGINE_DECODE_TIMEOUT", "1")
    monkeypatch.setattr(indexer_module, "decode_file", sometimes_slow)
    with Engine(index_dir, create=True) as eng:
        slow.set()
        first = eng.index([docs])
        assert first.failed == 1 and states(eng)["slow.txt"][0] == "failed"
        slow.clear()
        second = eng.index([docs])
        assert second.changed == 1 and second.failed == 0
        assert states(eng)["slow.txt"] == ("indexed", None)
        assert eng.search("lighthouse keepers", k=1)[0].path.endswith("slow.txt")


def test_hanging_decoder_is_stopped_by_the_time_limit(tmp_path, index_dir, monkeypatch):
    """Three files hang (more than there are decode threads): each is failed after the
    limit, the rest are indexed, and the run does not wait for the hung threads."""
    docs = write_corpus(tmp_path / "docs")
    for i in range(3):
        (docs / f"hang{i}.txt").write_text(f"a file that hangs its decoder, number {i}")
    release = threading.Event()
    real = indexer_module.decode_file

    def hanging(path: str, config):
        if Path(path).name.startswith("hang"):
            release.wait(120)
        return real(path, config)

    monkeypatch.setenv("SEARCHENGINE_DECODE_TIMEOUT", "1.5")
    monkeypatch.setattr(indexer_module, "decode_file", hanging)
    try:
        with Engine(index_dir, create=True) as eng:
            eng.index([write_corpus(tmp_path / "warm", {"w.txt": "load the model first"})])
            started = time.monotonic()
            summary = eng.index([docs])
            took = time.monotonic() - started
            got = states(eng)
    finally:
        release.set()
    assert took < 60
    assert summary.failed == 3 and summary.added == 9
    for i in range(3):
        assert got[f"hang{i}.txt"] == ("failed", "decoding took longer than 1.5 s")
    assert all(got[name] == ("indexed", None) for name in TOPICS)


HANG_SCRIPT = """
import sys, time
import searchengine.indexer as ix
real = ix.decode_file
def decode(path, config):
    if path.endswith("hang.txt"):
        time.sleep(10**6)
    return real(path, config)
ix.decode_file = decode
from searchengine.cli import main
main(sys.argv[1:])
"""


def test_cli_exits_although_a_decoder_thread_still_hangs(tmp_path, index_dir):
    docs = write_corpus(tmp_path / "docs")
    (docs / "hang.txt").write_text("this one never finishes decoding")
    res = run_python(
        HANG_SCRIPT,
        "index",
        str(docs),
        "--index",
        str(index_dir),
        "--json",
        env={"SEARCHENGINE_DECODE_TIMEOUT": "2"},
        timeout=240,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["failed"] == 1
    with Engine(index_dir) as eng:
        assert states(eng)["hang.txt"] == ("failed", "decoding took longer than 2 s")


CRASH_SCRIPT = """
import ctypes, os, signal, sys
import searchengine.indexer as ix
real = ix.decode_file
def decode(path, config):
    with open(path, "rb") as fh:
        if b"BOOM" in fh.read():
            if {how!r} == "segfault":
                ctypes.string_at(0)  # a real native crash in this thread
            os.kill(os.getpid(), signal.SIGKILL)
    return real(path, config)
ix.decode_file = decode
from searchengine.cli import main
main(sys.argv[1:])
"""


def run_python(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    import os
    import subprocess

    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def crashing_corpus(root: Path) -> Path:
    docs = write_corpus(root)
    (docs / "bomb.txt").write_text("BOOM: this note makes the decoder crash the process")
    return docs


@pytest.mark.parametrize(
    ("how", "sig"), [("sigkill", signal.SIGKILL), ("segfault", signal.SIGSEGV)]
)
def test_file_that_crashed_the_indexer_is_skipped_next_run(tmp_path, index_dir, how, sig):
    docs = crashing_corpus(tmp_path / "docs")
    script = CRASH_SCRIPT.format(how=how)
    args = ("index", str(docs), "--index", str(index_dir), "--json")
    first = run_python(script, *args)
    assert first.returncode == -sig, first.stderr
    assert (index_dir / JOURNAL_NAME).exists()  # it was written down before the attempt
    second = run_python(script, *args)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["failed"] == 1 and summary["added"] + summary["unchanged"] == 7
    assert any("bomb.txt" in n and CRASH_REASON in n for n in summary["notes"])
    status = json.loads(run_cli("status", "--index", str(index_dir), "--json").stdout)
    assert [(Path(f["path"]).name, f["reason"]) for f in status["failed"]] == [
        ("bomb.txt", CRASH_REASON)
    ]
    assert status["types"]["text"]["indexed"] == 6
    assert not (index_dir / JOURNAL_NAME).exists()
    third = run_python(script, *args)  # skipped while unchanged: no crash, no new probe
    assert third.returncode == 0 and json.loads(third.stdout)["unchanged"] == 7
    if how == "sigkill":  # a change gives it another chance
        (docs / "bomb.txt").write_text("defused: now an ordinary note about fireworks")
        fourth = run_python(script, *args)
        assert fourth.returncode == 0 and json.loads(fourth.stdout)["changed"] == 1
        with Engine(index_dir) as eng:
            assert states(eng)["bomb.txt"] == ("indexed", None)


def test_kill_from_outside_while_decoding_blames_no_file(tmp_path, index_dir):
    """A process killed from outside (kill -9, out of memory) while files were decoding
    leaves suspects; each is tried in a child first, passes, and is indexed as usual."""
    docs = write_corpus(tmp_path / "docs")
    args = ("index", str(docs), "--index", str(index_dir), "--json")
    killed = run_cli(*args, env={"SEARCHENGINE_CRASH_AT": "decode-started:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read_journal(index_dir / JOURNAL_NAME)  # at least the file being decoded
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["failed"] == 0 and summary["added"] == 6
    with Engine(index_dir) as eng:
        assert all(s == ("indexed", None) for s in states(eng).values())


# ---- the parts, alone -------------------------------------------------------------------


def test_journal_survives_only_as_a_whole(tmp_path):
    with Journal(tmp_path) as journal:
        journal.add(b"/a")
        journal.add(b"/b\xff")
        journal.discard(b"/a")
        assert read_journal(tmp_path / JOURNAL_NAME) == {b"/b\xff": 1}
    assert not (tmp_path / JOURNAL_NAME).exists()  # a clean exit leaves no suspects
    (tmp_path / JOURNAL_NAME).write_bytes(b"2f61 0\n")  # no end mark: torn or foreign
    assert read_journal(tmp_path / JOURNAL_NAME) == {}
    (tmp_path / JOURNAL_NAME).write_bytes(b"2f61 1\n.\n2f62 0\n")  # an old, longer tail
    assert read_journal(tmp_path / JOURNAL_NAME) == {b"/a": 2}
    again = Journal(tmp_path)
    assert again.left_over == {b"/a": 2}


def test_ordered_with_deadline_keeps_order_and_abandons_late_items():
    gate = threading.Event()

    def work(n: int) -> int:
        if n in (2, 5):
            gate.wait(30)
        else:
            time.sleep(0.01 * (7 - n))  # later items finish first
        return n * 10

    started = time.monotonic()
    got = list(
        ordered_with_deadline(
            work, range(8), workers=2, window=4, limit_s=0.5, on_timeout=lambda n: -n
        )
    )
    gate.set()
    assert got == [0, 10, -2, 30, 40, -5, 60, 70]
    assert time.monotonic() - started < 5
    with pytest.raises(ZeroDivisionError):
        list(
            ordered_with_deadline(
                lambda n: 1 // n, [1, 0], workers=2, window=2, limit_s=5, on_timeout=lambda n: n
            )
        )
    with pytest.raises(DeadlineExceeded):
        call_with_deadline(lambda: time.sleep(5), 0.2)


def test_ordered_with_deadline_works_ahead_while_the_consumer_is_busy():
    started: dict[int, float] = {}

    def work(n: int) -> int:
        started[n] = time.monotonic()
        time.sleep(0.1)
        return n

    items = ordered_with_deadline(
        work, range(8), workers=2, window=6, limit_s=5, on_timeout=lambda n: -n
    )
    assert next(items) == 0
    busy_until = time.monotonic() + 0.8
    time.sleep(0.8)  # embedding a batch, say
    assert list(items) == [1, 2, 3, 4, 5, 6, 7]
    assert started[5] < busy_until  # the window's last item did not wait for the consumer
