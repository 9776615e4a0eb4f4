"""IVF-PQ for spaces larger than RAM: trained once, filled in shards, merged on disk, searched
memory-mapped (the way autofaiss and clip-retrieval build 100M-vector indexes).

Why shards: adding 100M vectors to one in-memory IVF needs all codes in RAM at once. Here
each shard is a copy of the trained (empty) index filled with one slice of the vectors,
written to its own file, so shards can be filled one at a time or in parallel on a Ray
cluster (`parallel=True`), and `faiss.contrib.ondisk.merge_ondisk` concatenates their
inverted lists into one `.ivfdata` file that the search memory-maps: the process
holds only the coarse centroids and PQ code books; the page cache holds the lists in use.

Sizing (factory.choose with a memory budget, as autofaiss does): the codes must fit the
budget at n vectors, so the bytes per vector fall from dim/2 (SQ4) to dim/4 then dim/8 (PQ);
nlist is about 4 sqrt(n), trained on 40 rows a list. scripts/bench_ondisk.py measures the
recall against exact search (docs/scale.md).

Read-only behind the VectorIndex interface: an on-disk index is rebuilt, not changed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from searchengine.store.vectors.base import IndexSpec
from searchengine.store.vectors.factory import choose
from searchengine.store.vectors.ivf import IVFIndex

TRAINED = "trained.index"
MERGED = "merged.index"
IVFDATA = "merged.ivfdata"
SPEC = "spec.json"
Shards = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
"""Yields (ids, rows) slices of the space, in any order; called once."""


def plan(n: int, dim: int, memory_budget: int) -> IndexSpec:
    """An IVF index whose codes for n vectors fit `memory_budget` bytes (never flat)."""
    return choose(n, dim, exact_below=0, memory_budget=memory_budget)


def _fill(trained: bytes, ids: np.ndarray, rows: np.ndarray, out: str) -> str:
    """One shard: the trained index, these rows added, written to `out`."""
    index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    index.add_with_ids(np.ascontiguousarray(rows, np.float32), np.ascontiguousarray(ids, np.int64))
    faiss.write_index(index, out)
    return out


def build(
    out_dir: Path, spec: IndexSpec, sample: np.ndarray, shards: Shards, *, parallel: bool = False
) -> Path:
    """Train on `sample`, fill one shard file per slice, merge them on disk into out_dir.
    `parallel`: fill the shards as Ray tasks on the connected cluster (ray.init done)."""
    from faiss.contrib.ondisk import merge_ondisk

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    empty = IVFIndex(spec.dim, spec)
    empty.train(sample)
    trained = faiss.serialize_index(empty._index).tobytes()
    (out_dir / TRAINED).write_bytes(trained)
    names: list[str] = []
    if parallel:
        import ray

        fill = ray.remote(num_cpus=1, max_retries=3)(_fill)
        shared = ray.put(trained)
        refs = [
            fill.remote(shared, ids, rows, str(out_dir / f"shard{i:04d}.index"))
            for i, (ids, rows) in enumerate(shards())
        ]
        names = ray.get(refs)
    else:
        for i, (ids, rows) in enumerate(shards()):
            names.append(_fill(trained, ids, rows, str(out_dir / f"shard{i:04d}.index")))
    index = faiss.read_index(str(out_dir / TRAINED))
    merge_ondisk(index, names, str(out_dir / IVFDATA))
    faiss.write_index(index, str(out_dir / MERGED))
    (out_dir / SPEC).write_text(json.dumps(spec.to_dict()))
    for name in names:
        Path(name).unlink()
    return out_dir


class OnDiskIVFIndex(IVFIndex):
    """A merged on-disk IVF, searched memory-mapped; same search as IVFIndex (filters,
    nprobe, full scan when short of k)."""

    kind = "ivf-ondisk"

    @classmethod
    def open(cls, out_dir: Path) -> OnDiskIVFIndex:
        spec = IndexSpec.from_dict(json.loads((Path(out_dir) / SPEC).read_text()))
        # OnDiskInvertedLists map the .ivfdata file themselves; IO_FLAG_MMAP on top of them
        # crashes FAISS 1.x on search (tried). ONDISK_SAME_DIR: the folder may be moved.
        index = faiss.read_index(str(Path(out_dir) / MERGED), faiss.IO_FLAG_ONDISK_SAME_DIR)
        return cls(index, spec, mapped=False)

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        raise NotImplementedError("an on-disk index is rebuilt (ondisk.build), not changed")

    def remove(self, ids: np.ndarray | list[int]) -> int:
        raise NotImplementedError("an on-disk index is rebuilt (ondisk.build), not changed")

    def save(self, path: Path, state: dict[str, Any]) -> None:
        raise NotImplementedError("an on-disk index lives in its folder (ondisk.build)")
