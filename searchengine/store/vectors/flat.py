"""Exact search for small spaces: every vector scanned, stored as float16.

float16 is the catalog's own precision, so scores equal exact re-scoring from the catalog
while halving memory and disk against float32; a single query also runs about twice as fast
(the scan is memory-bound). Measured in scripts/bench_ann.py.
"""

from __future__ import annotations

import faiss
import numpy as np

from searchengine.store.vectors.base import Allowed, FaissIndex, IndexSpec


class FlatIndex(FaissIndex):
    kind = "flat"

    def __init__(
        self, index: faiss.Index | int, spec: IndexSpec | None = None, mapped: bool = False
    ) -> None:
        if isinstance(index, int):
            codes = faiss.IndexScalarQuantizer(
                index, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
            index = faiss.IndexIDMap(codes)
        super().__init__(index, spec or IndexSpec(kind="flat", dim=int(index.d)), mapped)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)

    def _search(
        self, queries: np.ndarray, k: int, allowed: Allowed | None
    ) -> tuple[np.ndarray, np.ndarray]:
        params = None if allowed is None else faiss.SearchParameters(sel=allowed.selector())
        return self._index.search(queries, k, params=params)
