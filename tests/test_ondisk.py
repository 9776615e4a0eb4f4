"""IVF-PQ built in shards, merged on disk and searched memory-mapped (issue 15, item 3)."""

from __future__ import annotations

import numpy as np
import pytest

from searchengine.store.vectors import Allowed
from searchengine.store.vectors.ondisk import OnDiskIVFIndex, build, plan


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
    index = OnDiskIVFIndex.open(out)
    assert len(index) == 6000 and sorted(index.ids()) == sorted(ids)
    queries = rows[:50]
    _, found = index.search(queries, 10 * spec.candidates)
    exact = ids[np.argsort(-queries @ rows.T, axis=1)[:, :10]]
    recall = np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, found, strict=True)])
    assert recall >= 0.9
    _, only = index.search(queries[:1], 5, allowed=Allowed.from_ids(ids[100:200]))
    assert set(only[0]) <= set(ids[100:200])
    with pytest.raises(NotImplementedError):
        index.add(ids[:1], rows[:1])
