"""IVF-PQ built in shards, merged on disk and searched memory-mapped (issue 15, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchengine.errors import UserError
from searchengine.store.store import Store, vector_memory
from searchengine.store.vectors import Allowed
from searchengine.store.vectors.ondisk import OnDiskIVFIndex, build, plan
from tests.conftest import REPO
from tests.store_fixtures import clustered, write_files

BUDGET = "150K"
"""RAM for one space's codes in these tests: 1,600 384-d vectors need 320 KB as in-memory SQ4
codes, so they go to disk as PQ48 (56 bytes a vector, 90 KB)."""


def test_sharded_on_disk_ivfpq_finds_what_exact_search_finds(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 32)).astype(np.float32)
    rows = centres[rng.integers(0, 50, 6000)] + 0.3 * rng.normal(size=(6000, 32))
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(6000, dtype=np.int64) * 3 + 7  # catalog ids, not positions
    spec = plan(len(rows), 32, memory_budget=6000 * 16)  # too small for SQ4: PQ codes
    assert spec.pq_m and spec.pq_m * spec.pq_bits // 8 + 8 <= 16

    def shards():
        for start in range(0, 6000, 2000):
            yield ids[start : start + 2000], rows[start : start + 2000]

    out = build(tmp_path / "space", spec, rows[:2000], shards)
    assert sorted(p.name for p in out.iterdir()) == [
        "merged.index", "merged.ivfdata", "spec.json", "trained.index"
    ]
    index = OnDiskIVFIndex.open(out, base_max_id=int(ids.max()))
    assert len(index) == 6000 and sorted(index.ids()) == sorted(ids)
    queries = rows[:50]
    _, found = index.search(queries, 10 * spec.candidates)
    exact = ids[np.argsort(-queries @ rows.T, axis=1)[:, :10]]
    recall = np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, found, strict=True)])
    assert recall >= 0.9
    _, only = index.search(queries[:1], 5, allowed=Allowed.from_ids(ids[100:200]))
    assert set(only[0]) <= set(ids[100:200])
    # vectors added after the build go to the in-memory delta; removed ones stop answering
    extra = np.array([10**6], np.int64)
    index.add(extra, -rows[:1])
    assert index.search(-rows[:1], 1)[1][0][0] == extra[0] and len(index) == 6001
    assert index.remove(ids[:1]) == 1 and len(index) == 6000
    assert ids[0] not in index.search(rows[:1], 50)[1][0]


@pytest.fixture
def small_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHENGINE_EXACT_BELOW", "500")
    monkeypatch.setenv("SEARCHENGINE_VECTOR_MEMORY", BUDGET)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("6G", 6 << 30), ("500m", 500 << 20), ("1.5GB", 3 << 29), ("150KiB", 150 << 10), ("0", 0)],
)
def test_vector_memory_reads_sizes(monkeypatch, value: str, expected: int) -> None:
    monkeypatch.setenv("SEARCHENGINE_VECTOR_MEMORY", value)
    assert vector_memory() == expected


@pytest.mark.parametrize("value", ["abc", "-5", "6 potatoes", "G"])
def test_vector_memory_refuses_what_is_not_a_size(monkeypatch, value: str) -> None:
    monkeypatch.setenv("SEARCHENGINE_VECTOR_MEMORY", value)
    with pytest.raises(UserError, match="SEARCHENGINE_VECTOR_MEMORY wants a size"):
        vector_memory()


def test_a_bad_budget_stops_an_index_run_before_any_work(monkeypatch, tmp_path: Path) -> None:
    from searchengine import Engine

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a note about harbours")
    monkeypatch.setenv("SEARCHENGINE_VECTOR_MEMORY", "lots")
    with Engine(tmp_path / "index", create=True, models={"speech": "off"}) as eng:
        with pytest.raises(UserError, match="not 'lots'"):
            eng.index([tmp_path / "docs"])
        assert eng.status()["files"] == 0


def exact_top(store: Store, q: np.ndarray, k: int) -> list[int]:
    ids = store.catalog.vector_ids("text")
    vecs = store.catalog.vector_map(ids.tolist())
    return sorted(vecs, key=lambda i: (-float(vecs[i] @ q), i))[:k]


def catalog_ids(store: Store) -> list[int]:
    return sorted(store.catalog.vector_ids("text").tolist())


def test_space_past_the_ram_budget_is_searched_from_disk_and_kept_in_step(
    tmp_path: Path, small_ram: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store.sync moves a space whose codes pass the budget to an on-disk IVF-PQ; adds and
    deletes after that are seen by readers, survive a reopen, and a tenth of churn builds a
    new base that replaces the old one; a larger budget brings the space back into RAM."""
    index = tmp_path / "index"
    store = Store(index)
    write_files(store, tmp_path / "lib", 200, 8)
    store.sync(("text",))
    cache = store.cache("text")
    assert cache.index.spec.kind == "ivf-ondisk" and cache.index.spec.pq_m == 48
    first = cache.bases()
    assert len(first) == 1 and (first[0] / "merged.ivfdata").exists()
    assert store.cache("text", "file").index.spec.kind == "flat"  # 200 file vectors fit
    assert store.index_kind("text").endswith(",PQ48 on disk")  # what `status` shows
    assert store.index_kind("text", "file") == "exact"

    rng = np.random.default_rng(5)
    stored = store.catalog.vectors(store.catalog.vector_ids("text")[::40].tolist())[1]
    queries = stored + 0.5 * rng.normal(size=stored.shape).astype(np.float32) / 384**0.5
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    recall = [
        len({i for i, _ in store.search("text", q, 10)[0]} & set(exact_top(store, q, 10))) / 10
        for q in queries
    ]
    assert np.mean(recall) >= 0.95

    reader = Store(index, readonly=True)
    try:
        assert reader.cache("text").index.spec.kind == "ivf-ondisk"
        added = write_files(store, tmp_path / "lib", 5, 8, seed=7, start=1000)
        q = next(iter(added.values()))[0]
        top, _ = reader.search("text", q, 1)  # the reader caught up: the delta holds it
        assert reader.catalog.segment_rows([top[0][0]])[top[0][0]].path in added
        gone = [r for r in store.catalog.all_files() if "f0000" in r.path]  # 10 files
        gone_ids = {
            sid
            for sid, row in store.catalog.segment_rows(catalog_ids(store)).items()
            if row.file_id in {r.id for r in gone}
        }
        with store.catalog.transaction() as conn:
            store.catalog.delete_files(conn, [r.id for r in gone])
        store.sync(("text",))  # 40 added + 80 removed: under a tenth of 1,600, kept
        assert store.cache("text").bases() == first
        assert sorted(reader.cache("text").ids().tolist()) == catalog_ids(store)
        for q in store.catalog.vectors(sorted(gone_ids)[:5])[1]:
            found = {i for i, _ in reader.search("text", q, 20)[0]}
            assert found and not found & gone_ids
    finally:
        reader.close()

    again = Store(index, readonly=True)  # delta and removals were saved with the cache
    try:
        assert len(again.cache("text")) == 1600 + 40 - 80
        assert sorted(again.cache("text").ids().tolist()) == catalog_ids(store)
    finally:
        again.close()

    reader = Store(index, readonly=True)
    assert reader.cache("text").index.base_dir == first[0]
    write_files(store, tmp_path / "lib", 20, 8, seed=8, start=2000)
    reader.cache("text")  # caught up from the catalog, not saved
    store.sync(("text",))  # 200 more: past a tenth, a new base
    second = store.cache("text").bases()
    assert len(second) == 1 and second != first and not first[0].exists()
    assert reader.cache("text").index.base_dir == second[0]  # the reader moved to it
    reader.close()
    assert store.cache("text").index.delta_size == 0
    assert sorted(store.cache("text").ids().tolist()) == catalog_ids(store)

    monkeypatch.setenv("SEARCHENGINE_VECTOR_MEMORY", "1G")
    store.sync(("text",))
    assert store.cache("text").index.spec.kind == "ivf" and not store.cache("text").bases()
    assert sorted(store.cache("text").ids().tolist()) == catalog_ids(store)
    store.close()


CRASH_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from searchengine.errors import UserError
from searchengine.store.store import Store, vector_memory
from tests.store_fixtures import write_files
store = Store(Path({index!r}))
write_files(store, Path({lib!r}), 200, 8)
store.sync(("text",))
"""


def test_kill_while_moving_to_disk_leaves_an_index_that_answers(
    tmp_path: Path, small_ram: None
) -> None:
    """Killed as the cache file naming the new base is written: the next open answers from
    the catalog, and the next sync builds a base and drops the orphan."""
    index = tmp_path / "index"
    env = dict(os.environ, SEARCHENGINE_CRASH_AT="vectors-written:1")
    script = CRASH_SCRIPT.format(repo=str(REPO), index=str(index), lib=str(tmp_path / "lib"))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert res.returncode == -9, res.stderr.decode()
    orphans = sorted(index.glob("text.segment.ondisk-*"))
    assert len(orphans) == 1 and not (index / "text.segment.faiss").exists()
    store = Store(index)
    try:
        q = clustered(1, 384, seed=11)[0]
        assert len(store.search("text", q, 10)[0]) == 10
        store.sync(("text",))
        assert store.cache("text").index.spec.kind == "ivf-ondisk"
        assert store.cache("text").bases() != orphans and not orphans[0].exists()
        assert sorted(store.cache("text").ids().tolist()) == catalog_ids(store)
    finally:
        store.close()


def test_shards_filled_as_ray_tasks_give_the_same_index(tmp_path: Path) -> None:
    """`parallel=True` fills the shards on a Ray cluster (here a local one) and returns their
    bytes to the builder: the merged index holds the same ids and answers the same."""
    import ray
    rows = clustered(3000, 32, seed=2)
    ids = np.arange(3000, dtype=np.int64) * 2 + 1
    spec = plan(3000, 32, memory_budget=3000 * 16)

    def shards():
        for start in range(0, 3000, 500):
            yield ids[start : start + 500], rows[start : start + 500]

    top = int(ids.max())
    local = OnDiskIVFIndex.open(build(tmp_path / "local", spec, rows, shards), base_max_id=top)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        out = build(tmp_path / "ray", spec, rows, shards, parallel=True)
        remote = OnDiskIVFIndex.open(out, base_max_id=top)
    finally:
        ray.shutdown()
    assert sorted(remote.ids()) == sorted(local.ids()) == sorted(ids)
    assert np.array_equal(remote.search(rows[:20], 10)[1], local.search(rows[:20], 10)[1])


def test_opening_a_base_prints_nothing_on_stdout(tmp_path: Path) -> None:
    """FAISS prints its on-disk bookkeeping with C printf; `search --json` shares stdout."""
    rows = clustered(2000, 32, seed=4)
    ids = np.arange(2000, dtype=np.int64)
    spec = plan(2000, 32, memory_budget=2000 * 16)
    folder = build(tmp_path / "base", spec, rows, lambda: iter([(ids, rows)]))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from searchengine.store.vectors.ondisk import OnDiskIVFIndex, build\n"
        "index = OnDiskIVFIndex.open(sys.argv[2], base_max_id=1999)\n"
        "print(len(index))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(REPO), str(folder)],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "2000\n"
