"""Vector indexes by size: one interface (base), one module per index type, a factory.

spec = choose(n, dim)              # flat below a threshold, IVF above
index = build(spec, dim); index.train(sample); index.add(ids, rows)
index.save(path, state); index, state = load(path)
"""

from searchengine.store.vectors.base import Allowed, IndexSpec, VectorIndex, load
from searchengine.store.vectors.factory import (
    DEFAULT_EXACT_BELOW,
    build,
    choose,
    needs_rebuild,
)
from searchengine.store.vectors.flat import FlatIndex
from searchengine.store.vectors.ivf import IVFIndex

__all__ = [
    "DEFAULT_EXACT_BELOW",
    "Allowed",
    "FlatIndex",
    "IVFIndex",
    "IndexSpec",
    "VectorIndex",
    "build",
    "choose",
    "load",
    "needs_rebuild",
]
