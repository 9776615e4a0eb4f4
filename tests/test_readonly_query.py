"""Readers never write: a search leaves every file of the index as it was, and works when
nothing under the index folder can be written (a read-only disk, another user's index)."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from searchengine import Engine
from searchengine.encoders.onnx_query import OnnxQueryEncoder
from searchengine.engine import QUERY_MODELS
from tests.conftest import REPO

SQLITE_WAL_FILES = ("catalog.db-wal", "catalog.db-shm")
"""SQLite's own files of a WAL database, which its readers create and mark by design (the
test on a read-only mount below covers a disk where they cannot)."""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from tests.conftest import write_corpus

    root = tmp_path_factory.mktemp("readonly")
    index = root / "index"
    with Engine(index, create=True) as engine:
        assert engine.index([write_corpus(root / "docs")]).added == 6
    assert any(p.is_dir() for p in (index / QUERY_MODELS).glob("text-*"))
    return index


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under `root` (folders too): relative name -> (size, mtime_ns)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.name not in SQLITE_WAL_FILES:
            stat = path.stat()
            out[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return out


def deny_writes(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Refuse, as a read-only disk would, every Python-level write under `root` (the tests
    run as root, which permission bits do not stop)."""
    prefix = str(root.resolve()) + os.sep

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return False
        return os.path.abspath(os.fsdecode(path)).startswith(prefix)

    def refuse(path: object) -> None:
        raise PermissionError(errno.EROFS, "read-only file system", os.fsdecode(path))

    def guard(func, *, writes=lambda *a, **k: True):
        def wrapper(path, *args, **kwargs):
            if inside(path) and writes(*args, **kwargs):
                refuse(path)
            return func(path, *args, **kwargs)

        return wrapper

    def mode_writes(mode: str = "r", *args: object, **kwargs: object) -> bool:
        return any(c in str(kwargs.get("mode", mode)) for c in "wax+")

    def flags_write(flags: int, *args: object, **kwargs: object) -> bool:
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))

    monkeypatch.setattr(builtins, "open", guard(builtins.open, writes=mode_writes))
    monkeypatch.setattr(io, "open", guard(io.open, writes=mode_writes))
    monkeypatch.setattr(os, "open", guard(os.open, writes=flags_write))
    for name in ("mkdir", "makedirs", "remove", "unlink", "rmdir", "chmod", "utime"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    for name in ("replace", "rename"):
        original = getattr(os, name)
        monkeypatch.setattr(
            os,
            name,
            lambda src, dst, *a, _f=original, **k: (
                refuse(src) if inside(src) or inside(dst) else _f(src, dst, *a, **k)
            ),
        )


@pytest.mark.parametrize("writable", [True, False], ids=["writable", "read-only"])
def test_search_writes_nothing_into_the_index(built, tmp_path, monkeypatch, writable):
    index = tmp_path / "index"
    shutil.copytree(built, index)
    # A memo that knows no file: the query must hash the weights and the export again, and
    # keep what it learns in memory rather than write it back.
    (index / QUERY_MODELS / "hashes.json").write_text("{}", encoding="utf-8")
    before = snapshot(index)
    if not writable:
        deny_writes(monkeypatch, index)
        with pytest.raises(PermissionError):
            (index / "probe").write_text("x")
    with Engine(index, readonly=True) as engine:
        hits = engine.search("growing vegetables", k=3)
        encoder = engine.models.query_encoder("text")
    assert Path(hits[0].path).name == "garden.md"
    assert isinstance(encoder, OnnxQueryEncoder)  # the export was found, not skipped
    monkeypatch.undo()
    assert snapshot(index) == before


def _read_only_mounts() -> bool:
    """Whether this process may bind-mount a folder read-only in a private mount namespace
    (root on Linux with util-linux's unshare), the one honest way to test a read-only disk."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


def cli_on_read_only_mount(folder: Path, *args: str) -> subprocess.CompletedProcess:
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    command = [sys.executable, "-m", "searchengine.cli", *args]
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(folder), *command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


@pytest.mark.skipif(not _read_only_mounts(), reason="needs root and unshare to mount read-only")
@pytest.mark.parametrize(
    "wal_files",
    [
        "present",
        "absent",
    ],
)
def test_cli_search_on_a_read_only_disk(built, tmp_path, wal_files):
    index = tmp_path / "disk" / "index"
    shutil.copytree(built, index)
    (index / QUERY_MODELS / "hashes.json").write_text("{}", encoding="utf-8")
    for name in SQLITE_WAL_FILES:
        (index / name).unlink(missing_ok=True)
    if wal_files == "present":  # as a reader leaves them beside a writer's clean close
        with Engine(index, readonly=True) as engine:
            engine.search("anything", k=1)
        assert all((index / name).exists() for name in SQLITE_WAL_FILES)
    before = snapshot(index)
    res = cli_on_read_only_mount(
        tmp_path / "disk", "search", "growing vegetables", "--index", str(index), "--json"
    )
    assert res.returncode == 0, res.stderr
    assert Path(json.loads(res.stdout)[0]["path"]).name == "garden.md"
    assert snapshot(index) == before


def test_indexing_a_folder_sqlite_cannot_write_is_one_line(tmp_path, monkeypatch):
    """Root ignores permissions, so the read-only disk is SQLite's own answer there."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from searchengine import UserError
    from searchengine import engine as engine_module

    def unwritable(folder, *, readonly=False):
        error = sqlite3.OperationalError("unable to open database file")
        raise OperationalError("PRAGMA journal_mode=WAL", {}, error)

    monkeypatch.setattr(engine_module, "Store", unwritable)
    with pytest.raises(UserError, match="cannot write to .*unable to open database file"):
        Engine(tmp_path / "index", create=True)
