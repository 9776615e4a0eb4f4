"""IVF-PQ for spaces larger than RAM: trained once, filled in shards, merged on disk, searched
memory-mapped (the way autofaiss and clip-retrieval build 100M-vector indexes).

Why shards: adding 100M vectors to one in-memory IVF needs all codes in RAM at once. Here
each shard is a copy of the trained (empty) index filled with one slice of the vectors, so
shards can be filled one at a time or in parallel as Ray tasks (`parallel=True`; each task
returns its shard's bytes, so the cluster needs no shared disk), and
`faiss.contrib.ondisk.merge_ondisk` concatenates their inverted lists into one `.ivfdata`
file that the search memory-maps: the process holds only the coarse centroids and PQ code
books; the page cache holds the lists in use.

Sizing (factory.place with a memory budget, as autofaiss does): the codes must fit the
budget at n vectors, so the bytes per vector fall from dim/2 (SQ4) to dim/4 then dim/8 (PQ);
nlist is about 4 sqrt(n), trained on 40 rows a list. scripts/bench_ondisk.py measures the
recall against exact search (docs/scale.md).

Kept in step with the catalog like any cache (store.VectorCache): the merged base is never
changed; vectors added after the build go to a small in-memory IVF with the same trained
code books (the delta), ids removed from the base are excluded while scanning, and both are
saved in the space's cache file, which names its base folder. When the delta and the
removals pass a tenth of the base, the writer builds a new base beside the old one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from searchengine.store.vectors.base import Allowed, IndexSpec
from searchengine.store.vectors.factory import choose
from searchengine.store.vectors.ivf import IVFIndex

TRAINED = "trained.index"
REBUILD_CHURN = 0.1
"""Rebuild the base once the delta plus the removed ids pass this share of it."""
IN_FLIGHT_PER_CPU = 2
"""Shards sent to the cluster at once per CPU: the rest wait on the driver, not in Ray's store."""
MERGED = "merged.index"
IVFDATA = "merged.ivfdata"
SPEC = "spec.json"
Shards = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
"""Yields (ids, rows) slices of the space, in any order; called once."""


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """FAISS's on-disk lists print progress ("resizing ...", "updating ondisk filename") with
    C printf on standard output, where `search --json` writes its answer: drop it."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def plan(n: int, dim: int, memory_budget: int) -> IndexSpec:
    """An IVF index whose codes for n vectors fit `memory_budget` bytes (never flat)."""
    return choose(n, dim, exact_below=0, memory_budget=memory_budget)


def _fill(trained: bytes, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One shard: the trained index with these rows added, serialised."""
    index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    index.add_with_ids(np.ascontiguousarray(rows, np.float32), np.ascontiguousarray(ids, np.int64))
    return faiss.serialize_index(index)


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

    def write(data: np.ndarray) -> None:
        name = out_dir / f"shard{len(names):04d}.index"
        name.write_bytes(np.asarray(data, np.uint8).tobytes())
        names.append(str(name))

    if parallel:
        _fill_on_cluster(trained, shards, write)
    else:
        for ids, rows in shards():
            write(_fill(trained, ids, rows))
    index = faiss.read_index(str(out_dir / TRAINED))
    with _quiet_stdout():
        # an empty space gets an empty lists file, so its base opens like any other
        merge_ondisk(index, names or [str(out_dir / TRAINED)], str(out_dir / IVFDATA))
    faiss.write_index(index, str(out_dir / MERGED))
    (out_dir / SPEC).write_text(json.dumps(spec.to_dict()))
    for name in names:
        Path(name).unlink()
    return out_dir


def _fill_on_cluster(trained: bytes, shards: Shards, write: Callable[[np.ndarray], None]) -> None:
    """Shards filled as Ray tasks, a few per CPU at a time, written here as they return."""
    import ray

    fill = ray.remote(num_cpus=1, max_retries=3)(_fill)
    shared = ray.put(trained)
    limit = max(2, IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))
    pending: list[Any] = []
    for ids, rows in shards():
        pending.append(fill.remote(shared, ids, rows))
        if len(pending) >= limit:
            ready, pending = ray.wait(pending, num_returns=1)
            write(ray.get(ready[0]))
    for ref in pending:
        write(ray.get(ref))


class OnDiskIVFIndex(IVFIndex):
    """A merged on-disk IVF (the base, memory-mapped lists) plus an in-memory delta IVF with
    the same code books (`_index`) and the ids removed from the base. Same search as
    IVFIndex (filters, nprobe, full scan when short of k), over both."""

    kind = "ivf-ondisk"

    def __init__(
        self,
        index: faiss.Index,
        spec: IndexSpec | None = None,
        mapped: bool = False,
        *,
        base: IVFIndex,
        base_dir: Path,
        base_max_id: int,
        removed: np.ndarray | None = None,
    ) -> None:
        super().__init__(index, spec, mapped)
        self.base = base
        self.base_dir = Path(base_dir)
        self.base_max_id = int(base_max_id)
        self.removed = np.unique(np.asarray(removed if removed is not None else [], np.int64))

    @staticmethod
    def open_base(folder: Path) -> IVFIndex:
        """The merged index of a folder written by `build`; its lists stay on disk."""
        folder = Path(folder)
        spec = IndexSpec.from_dict(json.loads((folder / SPEC).read_text()))
        # OnDiskInvertedLists map the .ivfdata file themselves; IO_FLAG_MMAP on top of them
        # crashes FAISS 1.x on search (tried). ONDISK_SAME_DIR: the folder may be moved.
        with _quiet_stdout():
            index = faiss.read_index(str(folder / MERGED), faiss.IO_FLAG_ONDISK_SAME_DIR)
        return IVFIndex(index, spec)

    @classmethod
    def open(cls, folder: Path, *, base_max_id: int) -> OnDiskIVFIndex:
        """A freshly built folder, with an empty delta. `base_max_id`: the largest id in the
        base (ids grow, so a removed id up to it is in the base, one above in the delta)."""
        base = cls.open_base(folder)
        delta = faiss.read_index(str(Path(folder) / TRAINED))
        spec = replace(base.spec, kind=cls.kind)
        return cls(delta, spec, base=base, base_dir=folder, base_max_id=base_max_id)

    @classmethod
    def _restore_extra(cls, meta: dict[str, Any], path: Path) -> dict[str, Any]:
        where = meta["ondisk"]
        folder = path.parent / str(where["base"])
        return {
            "base": cls.open_base(folder),  # OSError, RuntimeError: gone or cut short
            "base_dir": folder,
            "base_max_id": int(where["base_max_id"]),
            "removed": np.asarray(where.get("removed", []), np.int64),
        }

    def _header_extra(self) -> dict[str, Any]:
        return {
            "ondisk": {
                "base": self.base_dir.name,
                "base_max_id": self.base_max_id,
                "removed": self.removed.tolist(),
            }
        }

    def __len__(self) -> int:
        return len(self.base) - len(self.removed) + int(self._index.ntotal)

    @property
    def delta_size(self) -> int:
        return int(self._index.ntotal)

    def stale(self) -> bool:
        """Whether the delta and the removals have grown enough to build a new base."""
        return self.delta_size + len(self.removed) > REBUILD_CHURN * max(1, len(self.base))

    def remove(self, ids: np.ndarray | list[int]) -> int:
        ids = np.unique(np.asarray(ids, np.int64).reshape(-1))
        old = ids[ids <= self.base_max_id]  # ids grow: these can only be in the base
        new = np.setdiff1d(old, self.removed, assume_unique=True)
        self.removed = np.union1d(self.removed, new)
        return len(new) + super().remove(ids[ids > self.base_max_id])

    def ids(self) -> np.ndarray:
        kept = np.setdiff1d(self.base.ids(), self.removed)
        return np.concatenate([kept, super().ids()])

    def _search(
        self, queries: np.ndarray, k: int, allowed: Allowed | None
    ) -> tuple[np.ndarray, np.ndarray]:
        parts = [self._search_base(queries, k, allowed)]
        if self.delta_size:
            parts.append(super()._search(queries, k, allowed))
        scores = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        scores[ids < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def _search_base(
        self, queries: np.ndarray, k: int, allowed: Allowed | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The base's lists, skipping removed ids (and ids the filter does not allow)."""
        sel = allowed.selector() if allowed is not None else None
        share = 1.0 if allowed is None else allowed.count / max(1, len(self))
        if len(self.removed):
            gone = faiss.IDSelectorBatch(len(self.removed), faiss.swig_ptr(self.removed))
            keep = faiss.IDSelectorNot(gone)
            keep.referenced_objects = [gone, self.removed]
            if sel is not None:
                both = faiss.IDSelectorAnd(sel, keep)
                both.referenced_objects = [sel, keep]
                keep = both
            sel = keep
        return self.base._scan(queries, k, sel, share)
