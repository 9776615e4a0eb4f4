"""The index format is versioned: an index written in format 1 (the first release) migrates
on open and answers as a new one does; a newer format is refused with one clear line."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import faiss
import pytest

from searchengine import Engine, UserError
from searchengine.encoders.registry import ModelRegistry
from searchengine.media import decode_file
from searchengine.store.schema import SCHEMA_VERSION
from tests.conftest import run_cli, write_corpus
from tests.formats import catalog_v1


def build_v1(docs: Path, index: Path) -> None:
    """What the first release wrote: catalog.db with float32 blobs and its own FTS5 copy
    of the text, text.faiss (IDMap2 over a flat index), config.json."""
    from searchengine.config import IndexConfig

    index.mkdir(parents=True)
    config = IndexConfig()
    config.save(index)
    encoder = ModelRegistry(config).encoder("text")
    catalog = catalog_v1.Catalog(index / "catalog.db")
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(encoder.dim))
    with catalog.transaction() as conn:
        for path in sorted(docs.iterdir()):
            decoded = decode_file(str(path), config)
            vecs = encoder.embed_items([s.payload for s in decoded.segments])
            st = path.stat()
            record = catalog_v1.NewFile(
                path_key=os.fsencode(str(path)),
                path=str(path),
                type="text",
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                sha=None,
                state="indexed",
                meta=decoded.meta,
            )
            catalog_v1.Catalog.write_file(
                catalog, conn, record, decoded.segments, list(vecs), {"text": config.models["text"]}
            )
    ids = catalog.vector_ids("text")
    ids, rows = catalog.vectors(ids.tolist())
    flat.add_with_ids(rows, ids)
    faiss.write_index(flat, str(index / "text.faiss"))
    catalog.close()


@pytest.fixture(scope="module")
def v1_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("v1")
    docs = write_corpus(base / "docs")
    build_v1(docs, base / "v1")
    return docs, base / "v1"


def test_format_1_index_migrates_and_answers_like_a_new_one(v1_index, tmp_path: Path) -> None:
    docs, v1 = v1_index
    old = tmp_path / "old"
    shutil.copytree(v1, old)
    with sqlite3.connect(old / "catalog.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    res = run_cli("search", "planets and moons", "--index", str(old), "--json", "-k", "3")
    assert res.returncode == 0, res.stderr  # a reader migrates a writable old index
    with sqlite3.connect(old / "catalog.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        blob = db.execute("SELECT vector FROM segments LIMIT 1").fetchone()[0]
        assert len(blob) == 384 * 2  # float16 now
        assert db.execute("SELECT count(*) FROM file_vectors").fetchone()[0] == 6
    assert not (old / "text.faiss").exists()
    fresh = tmp_path / "fresh"
    with Engine(fresh, create=True) as eng:
        eng.index([docs])
    with Engine(old, readonly=True) as a, Engine(fresh, readonly=True) as b:
        for query in ("planets and moons", "database connection error", "pancakes"):
            ha, hb = a.search(query, k=6), b.search(query, k=6)
            assert [h.path for h in ha] == [h.path for h in hb]
            assert [h.score for h in ha] == pytest.approx([h.score for h in hb], abs=2e-3)
        sa = a.similar(docs / "garden.md", k=6)
        sb = b.similar(docs / "garden.md", k=6)
        assert [h.path for h in sa] == [h.path for h in sb]
    summary = run_cli("index", str(docs), "--index", str(old), "--json")
    assert summary.returncode == 0, summary.stderr
    assert '"unchanged": 6' in summary.stdout  # nothing re-embedded by the migration


def test_newer_format_is_refused_with_one_line(v1_index, tmp_path: Path) -> None:
    docs, _ = v1_index
    index = tmp_path / "idx"
    with Engine(index, create=True) as eng:
        eng.index([docs / "garden.md"])
    with sqlite3.connect(index / "catalog.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for readonly in (True, False):
        with pytest.raises(UserError, match="newer searchengine"):
            Engine(index, readonly=readonly)
    res = run_cli("search", "garden", "--index", str(index))
    assert res.returncode == 2
    assert "newer searchengine" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_readers_write_nothing(v1_index, tmp_path: Path) -> None:
    docs, _ = v1_index
    index = tmp_path / "idx"
    with Engine(index, create=True) as eng:
        eng.index([docs])

    def snapshot() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in index.rglob("*")}

    before = snapshot()
    for args in (
        ("search", "planets", "--json"),
        ("similar", str(docs / "garden.md"), "--json"),
        ("status", "--json"),
        ("models", "--json"),
    ):
        res = run_cli(*args, "--index", str(index))
        assert res.returncode == 0, res.stderr
    after = snapshot()
    changed = {k for k in before if before[k] != after.get(k)} | (set(after) - set(before))
    assert not changed - {"catalog.db-shm", "catalog.db-wal"}, changed
