"""Vector indexes by size: one interface (base), one module per index type, a factory.

spec = choose(n, dim)              # flat below a threshold, IVF above
spec = place(n, dim, ram=budget)   # ... or IVF-PQ on disk when the codes pass the RAM budget
index = build(spec, dim); index.train(sample); index.add(ids, rows)
index.save(path, state); index, state = load(path)
"""

from searchengine.store.vectors.base import Allowed, IndexSpec, VectorIndex, load
from searchengine.store.vectors.factory import (
    DEFAULT_EXACT_BELOW,
    build,
    choose,
    needs_rebuild,
    place,
)
from searchengine.store.vectors.flat import FlatIndex
from searchengine.store.vectors.ivf import IVFIndex
from searchengine.store.vectors.ondisk import OnDiskIVFIndex

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
    "OnDiskIVFIndex",
    "place",
]
