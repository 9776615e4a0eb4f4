"""The Store at library scale, forced small: exact and approximate caches, catching up by id
and tombstone, filters inside retrieval, long-lived readers, a killed rebuild."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchengine.store.schema import decode_vectors
from searchengine.store.store import Store
from searchengine.types import Filters
from tests.conftest import REPO
from tests.store_fixtures import clustered, write_files


def exact_top(store: Store, space: str, q: np.ndarray, k: int, level: str = "segment"):
    ids = store.catalog.vector_ids(space, level)
    vecs = store.catalog.vector_map(ids.tolist(), level)
    sims = {i: float(v @ q) for i, v in vecs.items()}
    return sorted(sims, key=lambda i: (-sims[i], i))[:k]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,600 segment vectors in 200 files, with the approximate index from 500 vectors up
    (trained once; each test gets a copy)."""
    folder = tmp_path_factory.mktemp("built") / "index"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEARCHENGINE_EXACT_BELOW", "500")
        store = Store(folder, readonly=False)
        write_files(store, folder.parent / "lib", 200, 8)
        store.sync(("text",))
        store.close()
    return folder


@pytest.fixture
def big(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SEARCHENGINE_EXACT_BELOW", "500")
    shutil.copytree(built, tmp_path / "index")
    store = Store(tmp_path / "index", readonly=False)
    yield store
    store.close()


def test_cache_type_follows_size(big: Store, tmp_path: Path) -> None:
    assert big.cache("text").index.spec.kind == "ivf"
    assert big.cache("text", "file").index.spec.kind == "flat"  # 200 file vectors
    assert (tmp_path / "index" / "text.segment.faiss").exists()


def test_approximate_search_recalls_exact(big: Store) -> None:
    rng = np.random.default_rng(99)
    stored = big.catalog.vectors(big.catalog.vector_ids("text")[::53].tolist())[1]
    queries = stored + 0.5 * rng.normal(size=stored.shape).astype(np.float32) / 384**0.5
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    recall = []
    for q in queries:
        found, _ = big.search("text", q, 10)
        truth = exact_top(big, "text", q, 10)
        recall.append(len({i for i, _ in found} & set(truth)) / 10)
        exact = big.catalog.vector_map([i for i, _ in found])
        for sid, score in found:  # scores are exact cosines from the stored vectors
            assert score == pytest.approx(float(exact[sid] @ q), abs=1e-5)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert np.mean(recall) >= 0.95


def test_filters_return_full_pages(big: Store) -> None:
    q = clustered(1, 384, seed=5)[0]
    # unselective (half the files): candidates are filtered after the k-NN
    found, _ = big.search("text", q, 10, Filters(path_glob="*/even/*"))
    assert len(found) == 10
    rows = big.catalog.segment_rows([i for i, _ in found])
    assert all("/even/" in r.path for r in rows.values())
    # selective (one file of 200): the passing ids are searched exactly
    found, exhausted = big.search("text", q, 10, Filters(path_glob="*/f00007.txt"))
    assert len(found) == 8 and exhausted
    # nothing passes
    found, exhausted = big.search("text", q, 10, Filters(types=["image"]))
    assert found == [] and exhausted


def test_store_catches_up_with_adds_and_deletes(big: Store, tmp_path: Path) -> None:
    reader = Store(tmp_path / "index", readonly=True)
    try:
        before = len(reader.cache("text"))
        added = write_files(big, tmp_path / "lib", 5, 8, seed=7, start=1000)
        assert len(reader.cache("text")) == before + 40
        q = next(iter(added.values()))[0]
        top, _ = reader.search("text", q, 1)
        assert reader.catalog.segment_rows([top[0][0]])[top[0][0]].path in added
        gone = [r.id for r in big.catalog.all_files() if r.path in added]
        with big.catalog.transaction() as conn:
            big.catalog.delete_files(conn, gone)
        assert len(reader.cache("text")) == before
        assert not set(reader.cache("text").ids().tolist()) - set(
            big.catalog.vector_ids("text").tolist()
        )
    finally:
        reader.close()


def test_reader_reloads_after_rebuild_and_pruned_tombstones(
    big: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = Store(tmp_path / "index", readonly=True)
    try:
        assert reader.cache("text").index.spec.kind == "ivf"
        gone = [r.id for r in big.catalog.all_files()[:150]]
        with big.catalog.transaction() as conn:
            big.catalog.delete_files(conn, gone)
        monkeypatch.setenv("SEARCHENGINE_EXACT_BELOW", "100000")
        big.sync(("text",))  # 400 vectors left: back to exact, tombstones pruned
        assert big.catalog.tombstones_after("text", "segment", 0)[1].size == 0
        cache = reader.cache("text")
        assert cache.index.spec.kind == "flat"
        assert sorted(cache.ids().tolist()) == sorted(big.catalog.vector_ids("text").tolist())
    finally:
        reader.close()


def test_vectors_are_stored_once_as_float16(big: Store) -> None:
    ids = big.catalog.vector_ids("text")[:5].tolist()
    with big.catalog.engine.connect() as conn:
        from sqlalchemy import text

        blobs = [
            conn.execute(text("SELECT vector FROM segments WHERE id = :i"), {"i": i}).scalar()
            for i in ids
        ]
    assert all(len(b) == 384 * 2 for b in blobs)
    rows = decode_vectors(blobs)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3)


def test_whole_file_vector_is_the_mean_of_its_segments(big: Store) -> None:
    rec = big.catalog.all_files()[3]
    segs = big.catalog.vector_map(
        [
            sid
            for sid, r in big.catalog.segment_rows(big.catalog.vector_ids("text").tolist()).items()
            if r.file_id == rec.id
        ]
    )
    mean = np.mean(list(segs.values()), axis=0)
    mean /= np.linalg.norm(mean)
    assert big.catalog.mean_vectors(rec.id)["text"] == pytest.approx(mean, abs=2e-3)


CRASH_SCRIPT = """
import os, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from searchengine.store.store import Store
from tests.store_fixtures import write_files
store = Store(Path({index!r}), readonly=False)
write_files(store, Path({lib!r}), 100, 8, seed=3, start=500)
store.sync(("text",))
"""


def test_kill_during_rebuild_leaves_an_index_that_answers(big: Store, tmp_path: Path) -> None:
    """The 1,600-vector IVF is saved; 800 more vectors make it rebuild, and the process is
    killed as the new file is written. The old file still answers; the next sync
    completes the work and equals a clean build."""
    index = tmp_path / "index"
    before = (index / "text.segment.faiss").read_bytes()
    env = dict(
        os.environ, SEARCHENGINE_CRASH_AT="vectors-written:1", SEARCHENGINE_EXACT_BELOW="500"
    )
    script = CRASH_SCRIPT.format(repo=str(REPO), index=str(index), lib=str(tmp_path / "lib"))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert res.returncode == -9, res.stderr.decode()
    assert (index / "text.segment.faiss").read_bytes() == before
    reader = Store(index, readonly=True)
    try:
        q = clustered(1, 384, seed=11)[0]
        found, _ = reader.search("text", q, 10)
        assert len(found) == 10  # answers, and sees the 800 committed vectors by catching up
        assert len(reader.cache("text")) == 2400
    finally:
        reader.close()
    big.sync(("text",))
    assert sorted(big.cache("text").ids().tolist()) == sorted(
        big.catalog.vector_ids("text").tolist()
    )
