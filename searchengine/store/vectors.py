"""One FAISS index per space, keyed by segment id: a derived cache of the catalog's vectors.

It is written atomically (temp file + rename) and, on open, caught up with the catalog by
comparing id sets, so a stale or missing file after a crash costs time, never correctness.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from searchengine.store.catalog import Catalog


class VectorIndex:
    """Exact inner-product search over L2-normalised vectors of one space."""

    def __init__(self, folder: Path, space: str) -> None:
        self.path = folder / f"{space}.faiss"
        self.space = space
        self.index: faiss.IndexIDMap2 | None = None
        self.dirty = False

    @property
    def dim(self) -> int | None:
        return None if self.index is None else int(self.index.d)

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def _ensure(self, dim: int) -> faiss.IndexIDMap2:
        if self.index is None or self.index.d != dim:
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        return self.index

    def sync(self, catalog: Catalog) -> None:
        """Load the saved index once, then add what the catalog has and drop what it lacks."""
        if self.index is None and self.path.exists():
            try:
                self.index = faiss.read_index(str(self.path))
            except Exception:
                self.index = None  # unreadable cache: rebuild from the catalog
        want = catalog.vector_ids(self.space)
        have = self.ids()
        extra = np.setdiff1d(have, want, assume_unique=True)
        if len(extra):
            self.remove(extra)
        missing = np.setdiff1d(want, have, assume_unique=True)
        for i in range(0, len(missing), 20000):
            ids, rows = catalog.vectors(missing[i : i + 20000].tolist())
            if len(ids):
                self.add(ids, rows)

    def ids(self) -> np.ndarray:
        if self.index is None or self.index.ntotal == 0:
            return np.zeros(0, np.int64)
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        index = self._ensure(rows.shape[1])
        index.add_with_ids(rows, np.ascontiguousarray(ids, dtype=np.int64))
        self.dirty = True

    def remove(self, ids: np.ndarray | list[int]) -> None:
        if self.index is None or len(ids) == 0:
            return
        self.index.remove_ids(np.asarray(ids, dtype=np.int64))
        self.dirty = True

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (segment id, cosine) pairs, restricted to `allowed` ids inside the search."""
        if self.index is None or self.index.ntotal == 0 or k <= 0:
            return []
        if query.shape[-1] != self.index.d:
            return []
        params = None
        if allowed is not None:
            if len(allowed) == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed.astype(np.int64)))
        k = min(k, int(self.index.ntotal))
        scores, ids = self.index.search(
            np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k, params=params
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]

    def save(self) -> None:
        """Write to a temp file and rename, so readers and crashes only see whole files."""
        if not self.dirty or self.index is None:
            return
        from searchengine import faults

        tmp = self.path.with_suffix(".faiss.tmp")
        faiss.write_index(self.index, str(tmp))
        faults.point("vectors-written")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.dirty = False
