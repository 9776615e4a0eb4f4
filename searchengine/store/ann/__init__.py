"""Vector indexes by size: one interface (base), one module per index type, a factory.

spec = choose(n, dim)              # flat below a threshold, IVF above
index = build(spec, dim); index.train(sample); index.add(ids, rows)
index.save(path, state); index, state = load(path)
"""

from searchengine.store.ann.base import Allowed, IndexSpec, VectorIndex, load
from searchengine.store.ann.factory import (
    DEFAULT_EXACT_BELOW,
    build,
    choose,
    needs_rebuild,
)
from searchengine.store.ann.flat import FlatIndex
from searchengine.store.ann.ivf import IVFIndex

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
