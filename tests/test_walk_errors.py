"""Walk errors are not deletions: what cannot be read (a folder, a file, a missing root)
keeps its entries and vectors, status says why, and only `--prune` forgets a missing root."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from searchengine import Engine
from searchengine import indexer as indexer_module
from searchengine.errors import UserError
from searchengine.indexer import EMPTY_ROOT, MISSING_ROOT
from tests import test_changes
from tests.conftest import run_cli, write_corpus
from tests.test_changes import segment_ids

embed_calls = test_changes.embed_calls  # the fixture that counts what the text model embeds

DRIVE = {
    "kayak.txt": "Paddling a sea kayak along the cliffs at dawn, with seals nearby.",
    "violin.txt": "Practising violin scales slowly before the orchestra rehearsal.",
}


def tree(tmp_path: Path) -> tuple[Path, Path]:
    """docs/ with the corpus, and docs/shelf/ holding two more notes."""
    docs = write_corpus(tmp_path / "docs")
    write_corpus(docs / "shelf", DRIVE)
    return docs, docs / "shelf"


def all_segments(eng: Engine) -> dict[str, list[int]]:
    return {Path(r.path).name: segment_ids(eng, Path(r.path).name) for r in eng.catalog.all_files()}


def deny(monkeypatch: pytest.MonkeyPatch, func: str, path: Path) -> None:
    """Make os.<func> fail on one path as a real EACCES would (root ignores mode bits)."""
    real = getattr(os, func)

    def denied(target=".", *args, **kwargs):
        if os.fspath(target) == str(path):
            raise PermissionError(13, "Permission denied", os.fspath(target))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(os, func, denied)


@pytest.mark.parametrize("func", ["scandir", "stat"])
def test_unreadable_folder_keeps_entries_and_vectors(tmp_path, index_dir, embed_calls, func):
    docs, shelf = tree(tmp_path)
    with Engine(index_dir, create=True) as eng:
        eng.index([docs])
        before = all_segments(eng)
        embed_calls.clear()
        with pytest.MonkeyPatch.context() as mp:
            deny(mp, func, shelf)
            summary = eng.index([docs])
            assert summary.deleted == 0 and summary.unreachable == 2
            assert summary.unchanged == 6
            assert summary.to_json()["unreachable_paths"] == [
                {"path": str(shelf), "reason": "permission denied", "files": 2}
            ]
            assert any(str(shelf) in n and "permission denied" in n for n in summary.notes)
        assert all_segments(eng) == before  # entries and vectors kept
        away = eng.status()["unreachable"]
        assert {Path(u["path"]).name for u in away} == set(DRIVE)
        assert {(u["at"], u["reason"], u["state"]) for u in away} == {
            (str(shelf), "permission denied", "indexed")
        }
        assert eng.search("sea kayak seals", k=1)[0].path.endswith("kayak.txt")
        back = eng.index([docs])  # readable again: nothing to re-embed
        assert back.unchanged == 8 and (back.added, back.changed, back.deleted) == (0, 0, 0)
        assert embed_calls == []
        assert all_segments(eng) == before
        assert eng.status()["unreachable"] == []


def test_unreadable_file_keeps_its_entry(tmp_path, index_dir, embed_calls):
    docs, shelf = tree(tmp_path)
    kayak = shelf / "kayak.txt"
    with Engine(index_dir, create=True) as eng:
        eng.index([docs])
        before = all_segments(eng)
        embed_calls.clear()
        with pytest.MonkeyPatch.context() as mp:
            deny(mp, "stat", kayak)
            summary = eng.index([docs])
        assert summary.deleted == 0 and summary.unreachable == 1
        assert all_segments(eng) == before and embed_calls == []
        assert [(u["path"], u["reason"]) for u in eng.status()["unreachable"]] == [
            (str(kayak), "permission denied")
        ]


def test_changed_file_that_cannot_be_read_keeps_its_old_entry(
    tmp_path, index_dir, embed_calls, monkeypatch
):
    """Its size changed, so it must be read again, and reading fails (a sleeping mount)."""
    docs, shelf = tree(tmp_path)
    kayak = shelf / "kayak.txt"
    with Engine(index_dir, create=True) as eng:
        eng.index([docs])
        before = segment_ids(eng, "kayak.txt")
        kayak.write_text("Paddling a sea kayak along the cliffs at dusk, with puffins.")
        real = indexer_module.decode_file

        def flaky(path: str, config):
            if path == str(kayak):
                raise OSError(5, "Input/output error", path)
            return real(path, config)

        monkeypatch.setattr(indexer_module, "decode_file", flaky)
        summary = eng.index([docs])
        assert summary.failed == 0 and summary.unreachable == 1
        rec = eng.catalog.file_by_key(os.fsencode(str(kayak)))
        assert rec.state == "indexed" and segment_ids(eng, "kayak.txt") == before
        assert [u["reason"] for u in eng.status()["unreachable"]] == ["input/output error"]
        monkeypatch.setattr(indexer_module, "decode_file", real)
        embed_calls.clear()
        again = eng.index([docs])  # readable again: the new content is embedded
        assert again.changed == 1 and sum(embed_calls) == 1
        assert eng.status()["unreachable"] == []
        assert eng.search("puffins at dusk", k=1)[0].path.endswith("kayak.txt")


def test_missing_root_keeps_entries_until_pruned(tmp_path, index_dir, embed_calls):
    docs = write_corpus(tmp_path / "docs")
    drive = write_corpus(tmp_path / "drive", DRIVE)
    unplugged = tmp_path / "unplugged"
    with Engine(index_dir, create=True) as eng:
        eng.index([docs, drive])
        before = all_segments(eng)
        embed_calls.clear()
        drive.rename(unplugged)
        (docs / "garden.md").write_text("Notes on pruning apple trees in late winter.")
        summary = eng.index([docs, drive])  # the run goes on for the other root
        assert summary.changed == 1 and summary.deleted == 0 and summary.unreachable == 2
        assert sum(embed_calls) == 1  # only the edited file
        notes = [n for n in summary.notes if str(drive) in n]
        assert len(notes) == 1 and "missing" in notes[0] and "--prune" in notes[0]
        kept = {k: v for k, v in all_segments(eng).items() if k in DRIVE}
        assert kept == {k: before[k] for k in DRIVE}
        away = eng.status()["unreachable"]
        assert {(Path(u["path"]).name, u["at"], u["reason"]) for u in away} == {
            (name, str(drive), MISSING_ROOT) for name in DRIVE
        }
        unplugged.rename(drive)  # plugged back in: nothing re-embedded
        embed_calls.clear()
        back = eng.index([docs, drive])
        assert back.unchanged == 8 and back.deleted == 0 and embed_calls == []
        assert eng.status()["unreachable"] == []
        drive.rename(unplugged)
        pruned = eng.index([docs, drive], prune=True)
        assert pruned.deleted == 2 and pruned.unchanged == 6
        assert [n for n in pruned.notes if str(drive) in n] == [
            f"{drive} is missing: forgot the 2 files indexed under it"
        ]
        names = {Path(r.path).name for r in eng.catalog.all_files()}
        assert names == {n for n in before if n not in DRIVE}  # only the gone root's files
        assert eng.status()["unreachable"] == []
        with pytest.raises(UserError, match="no such file or folder"):
            eng.index([docs, drive])  # the index holds nothing there now


def test_missing_root_unknown_to_the_index_is_still_an_error(tmp_path, index_dir):
    docs = write_corpus(tmp_path / "docs")
    with Engine(index_dir, create=True) as eng:
        eng.index([docs])
        with pytest.raises(UserError, match="no such file or folder"):
            eng.index([docs, tmp_path / "never-indexed"])
        with pytest.raises(UserError, match="no such file or folder"):
            eng.index([tmp_path / "never-indexed"], prune=True)


def test_cli_missing_root_summary_status_and_prune(tmp_path, index_dir):
    docs = write_corpus(tmp_path / "docs")
    drive = write_corpus(tmp_path / "drive", DRIVE)
    assert run_cli("index", str(docs), str(drive), "--index", str(index_dir)).returncode == 0
    shutil.move(drive, tmp_path / "unplugged")
    res = run_cli("index", str(docs), str(drive), "--index", str(index_dir), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["unreachable"] == 2 and summary["deleted"] == 0
    assert summary["unreachable_paths"] == [
        {"path": str(drive), "reason": MISSING_ROOT, "files": 2}
    ]
    assert len([ln for ln in res.stderr.splitlines() if str(drive) in ln]) == 1
    res = run_cli("status", "--index", str(index_dir), "--json")
    away = json.loads(res.stdout)["unreachable"]
    assert sorted(Path(u["path"]).name for u in away) == sorted(DRIVE)
    res = run_cli("status", "--index", str(index_dir))
    assert f"unreachable: {drive}: {MISSING_ROOT} (2 files kept)" in res.stdout
    res = run_cli("index", str(docs), str(drive), "--index", str(index_dir), "--prune", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["deleted"] == 2
    res = run_cli("status", "--index", str(index_dir), "--json")
    info = json.loads(res.stdout)
    assert info["files"] == 6 and info["unreachable"] == []


def test_empty_mount_folder_is_no_deletion(tmp_path, index_dir, embed_calls):
    """An unplugged drive often leaves its mount folder behind, empty: its files are kept
    (reported as unreachable) until `--prune`; files deleted from a folder that still holds
    others are deleted as usual."""
    docs = write_corpus(tmp_path / "docs")
    drive = write_corpus(tmp_path / "mnt" / "drive", DRIVE)
    with Engine(index_dir, create=True) as eng:
        eng.index([docs, drive])
        embed_calls.clear()
        for child in drive.iterdir():  # unmounted: the folder is there, with nothing in it
            child.unlink()
        (docs / "garden.md").unlink()  # an ordinary deletion beside it
        summary = eng.index([docs, drive])
        assert summary.deleted == 1 and summary.unreachable == 2 and embed_calls == []
        notes = [n for n in summary.notes if str(drive) in n]
        assert len(notes) == 1 and EMPTY_ROOT in notes[0] and "--prune" in notes[0]
        away = eng.status()["unreachable"]
        assert {(Path(u["path"]).name, u["reason"]) for u in away} == {
            (name, EMPTY_ROOT) for name in DRIVE
        }
        assert eng.search("sea kayak by the cliffs", k=1)[0].path.startswith(str(drive))
        write_corpus(tmp_path / "remount", DRIVE)  # mounted again: nothing re-embedded
        for child in (tmp_path / "remount").iterdir():
            shutil.copy2(child, drive / child.name)
        back = eng.index([docs, drive])
        assert back.deleted == 0 and back.unchanged == 7 and embed_calls == []
        for child in drive.iterdir():
            child.unlink()
        pruned = eng.index([docs, drive], prune=True)
        assert pruned.deleted == 2
        assert [n for n in pruned.notes if str(drive) in n] == [
            f"{drive} is empty: forgot the 2 files indexed under it"
        ]
