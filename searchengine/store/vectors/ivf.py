"""Approximate search for large spaces: an inverted file (IVF) over compressed codes.

The vectors are split into `nlist` clusters; a query scans the codes in its `nprobe` nearest
clusters only. Codes are scalar-quantised (SQ4 or SQ8: dim/2 or dim bytes per vector) or
product-quantised (PQ, pq_m bytes per vector). IVF supports add and remove by id (HNSW
cannot remove), and filters are applied while scanning (SearchParametersIVF.sel).
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from searchengine.store.vectors.base import Allowed, FaissIndex, IndexSpec

KMEANS_ITERATIONS = 10  # FAISS's default 25 costs 2.5x the time; 10 gives bench_ann's recall


def factory_string(spec: IndexSpec) -> str:
    """FAISS index_factory text; "np" turns off polysemous training (minutes, unused here)."""
    if spec.pq_m:
        return f"IVF{spec.nlist},PQ{spec.pq_m}x{spec.pq_bits}np"
    return f"IVF{spec.nlist},SQ{spec.sq or '8'}"


class IVFIndex(FaissIndex):
    kind = "ivf"

    def __init__(
        self, index: faiss.Index | int, spec: IndexSpec | None = None, mapped: bool = False
    ) -> None:
        if spec is None:
            raise ValueError("an IVF index needs a spec (nlist, codes, nprobe)")
        if isinstance(index, int):
            index = faiss.index_factory(index, factory_string(spec), faiss.METRIC_INNER_PRODUCT)
        super().__init__(index, spec, mapped)
        self._ivf = faiss.extract_index_ivf(self._index)

    def _writable(self) -> faiss.Index:
        index = super()._writable()
        self._ivf = faiss.extract_index_ivf(index)
        return index

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def train(self, rows: np.ndarray) -> None:
        """k-means for the lists and the code books, on a sample of the space's rows."""
        rows = self._rows(rows)
        if len(rows) < self._ivf.nlist:
            raise ValueError(f"need at least nlist={self._ivf.nlist} rows, got {len(rows)}")
        index = self._writable()
        ivf = faiss.downcast_index(self._ivf)
        if isinstance(ivf, faiss.IndexIVFPQ):
            ivf.do_polysemous_training = False  # minutes of work we never use
        index.train(rows)

    def ids(self) -> np.ndarray:
        invlists = self._ivf.invlists
        parts = []
        for lst in range(invlists.nlist):
            size = invlists.list_size(lst)
            if size:
                ptr = invlists.get_ids(lst)
                parts.append(faiss.rev_swig_ptr(ptr, size).copy())
                invlists.release_ids(lst, ptr)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _search(
        self, queries: np.ndarray, k: int, allowed: Allowed | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None:
            return self._scan(queries, k, None, 1.0)
        return self._scan(queries, k, allowed.selector(), allowed.count / max(1, len(self)))

    def _scan(
        self, queries: np.ndarray, k: int, sel: faiss.IDSelector | None, share: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search with a FAISS selector passing about `share` of the ids."""
        nlist = int(self._ivf.nlist)
        nprobe = min(nlist, max(1, self.spec.nprobe))
        if sel is not None:
            # A filter passing a fraction f of the ids: scan about 1/f as many lists, so as
            # many allowed candidates are seen as an unfiltered search sees.
            nprobe = min(nlist, math.ceil(nprobe / max(min(1.0, share), 1e-9)))
        scores, ids = self._index.search(
            queries, k, params=faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        )
        short = np.flatnonzero((ids < 0).any(axis=1))
        if len(short) and nprobe < nlist:
            # Fewer than k found in the scanned lists: scan all lists for those queries, so a
            # search returns k whenever k (allowed) ids exist.
            full = faiss.SearchParametersIVF(sel=sel, nprobe=nlist)
            scores[short], ids[short] = self._index.search(queries[short], k, params=full)
        return scores, ids
