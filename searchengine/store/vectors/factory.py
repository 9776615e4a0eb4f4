"""Choose an index type by size and memory budget, build it, and say when to rebuild.

In the spirit of autofaiss and txtai's ANN factory: exact (flat, float16) while a scan is fast
enough, then an inverted file over compressed codes, as small as the budget requires. The
defaults come from scripts/bench_ann.py.
"""

from __future__ import annotations

import math
from dataclasses import replace

from searchengine.store.vectors.base import IndexSpec, VectorIndex
from searchengine.store.vectors.flat import FlatIndex
from searchengine.store.vectors.ivf import IVFIndex

DEFAULT_EXACT_BELOW = 100_000  # float16 scan of 100k x 384: ~2.5 ms idle, ~17 ms CPU when busy
MIN_TRAIN_PER_LIST = 39  # FAISS k-means wants at least this many points per centroid
TRAIN_PER_LIST = 40
MIN_NLIST, MAX_NLIST = 16, 8192  # 8192 lists train on 330k rows
MIN_NPROBE = 32  # small spaces: 32 lists still cost well under a millisecond
LISTS_PER_PROBE = 32  # scan 1/32 of the lists: ~n/32 codes per query
SQ_CANDIDATES = 10  # 4-bit codes: re-scoring 10 k candidates reaches recall@10 ~0.99 at 1M
PQ_CANDIDATES = 20  # PQ codes lose more: fetch 20 k
PQ_PROBE_FACTOR = 2  # ... and scan twice the lists
ID_BYTES = 8
ONDISK = "ivf-ondisk"


def nlist_for(n: int) -> int:
    """About 4 sqrt(n) lists, bounded, and never more than the rows can train."""
    nlist = int(round(4 * math.sqrt(max(n, 1))))
    return max(MIN_NLIST, min(MAX_NLIST, nlist, n // MIN_TRAIN_PER_LIST))


def nprobe_for(nlist: int) -> int:
    """Lists scanned per query: enough for recall@10 >= 0.95 after re-scoring (bench_ann)."""
    return min(nlist, max(MIN_NPROBE, int(round(nlist / LISTS_PER_PROBE))))


def pq_m_for(dim: int, dims_per_byte: int = 8) -> int:
    """PQ sub-vectors of 8 bits: dim/dims_per_byte, rounded down to a divisor of dim."""
    m = max(1, dim // dims_per_byte)
    while dim % m:
        m -= 1
    return m


def bytes_per_vector(spec: IndexSpec) -> int:
    """What one vector costs in memory and on disk (codes and id), for the budget."""
    if spec.kind == FlatIndex.kind:
        return 2 * spec.dim + ID_BYTES
    if spec.pq_m:
        return spec.pq_m * spec.pq_bits // 8 + ID_BYTES
    return (spec.dim * int(spec.sq or 8) + 7) // 8 + ID_BYTES


def choose(
    n: int,
    dim: int,
    *,
    exact_below: int = DEFAULT_EXACT_BELOW,
    memory_budget: int | None = None,
) -> IndexSpec:
    """The index for n vectors of dimension dim.

    Flat (exact, float16: 2 dim bytes a vector) below `exact_below` vectors, if it fits
    `memory_budget` (bytes). Otherwise IVF over 4-bit scalar codes (dim/2 bytes), which keeps
    recall@10 ~0.99 after re-scoring 10 k candidates even on hard data. When those do not fit
    the budget, IVF-PQ with dim/4 then dim/8 bytes, re-scoring 20 k candidates: smaller, but
    less accurate on hard data. Spaces too small to train an IVF stay flat whatever the budget.
    """
    flat = IndexSpec(kind=FlatIndex.kind, dim=dim)
    trainable = n >= MIN_TRAIN_PER_LIST * MIN_NLIST

    def fits(spec: IndexSpec) -> bool:
        return memory_budget is None or n * bytes_per_vector(spec) <= memory_budget

    if not trainable or (n < exact_below and fits(flat)):
        return flat
    nlist = nlist_for(n)
    ivf = IndexSpec(
        kind=IVFIndex.kind,
        dim=dim,
        nlist=nlist,
        sq="4",
        nprobe=nprobe_for(nlist),
        candidates=SQ_CANDIDATES,
        train_size=min(n, TRAIN_PER_LIST * nlist),
    )
    if fits(ivf):
        return ivf
    # PQ codes rank more coarsely than SQ4: twice the lists scanned (scripts/sweep_ondisk.py:
    # recall@10 0.978 -> 0.992 text, 0.944 -> 0.977 clip at 100k, no slower per query)
    pq = replace(
        ivf,
        sq="",
        pq_m=pq_m_for(dim, 4),
        pq_bits=8,
        candidates=PQ_CANDIDATES,
        nprobe=min(nlist, PQ_PROBE_FACTOR * ivf.nprobe),
    )
    return pq if fits(pq) else replace(pq, pq_m=pq_m_for(dim, 8))


def place(
    n: int, dim: int, *, exact_below: int = DEFAULT_EXACT_BELOW, ram: int | None = None
) -> IndexSpec:
    """`choose`, then, when that index's codes would not fit `ram` bytes, an on-disk IVF whose
    codes do (ondisk.py): the process keeps only centroids and code books, and the page
    cache can hold the lists."""
    spec = choose(n, dim, exact_below=exact_below)
    if ram is None or n * bytes_per_vector(spec) <= ram:
        return spec
    small = choose(n, dim, exact_below=0, memory_budget=ram)
    return spec if small.kind == FlatIndex.kind else replace(small, kind=ONDISK)


def build(spec: IndexSpec, dim: int) -> VectorIndex:
    """An empty index for `spec`; IVF kinds need `train(sample rows)` before `add`.
    (The on-disk kind is built by ondisk.build from the whole space instead.)"""
    if spec.kind == FlatIndex.kind:
        return FlatIndex(dim, spec)
    if spec.kind == IVFIndex.kind:
        return IVFIndex(dim, spec)
    raise ValueError(f"unknown index kind {spec.kind!r}")


def needs_rebuild(
    spec_in_use: IndexSpec,
    trained_on: int,
    n_now: int,
    *,
    exact_below: int = DEFAULT_EXACT_BELOW,
    memory_budget: int | None = None,
    ram: int | None = None,
) -> bool:
    """Whether the index in use no longer suits the space (`trained_on`: n when it was built).

    Flat turns IVF once past `exact_below` (or the budget). IVF turns flat again only below
    half the threshold, so a space near it does not flip back and forth. An IVF is rebuilt
    when the space grew or shrank 4x since training (its lists are then far too long or too
    many for good recall at the chosen nprobe), or when the budget calls for other codes.
    An in-memory index moves to disk once its codes pass `ram`, and back only below half.
    (An on-disk index is also rebuilt when its delta grows: OnDiskIVFIndex.stale.)
    """
    if spec_in_use.kind == ONDISK:
        if trained_on > 0 and (n_now > 4 * trained_on or 4 * n_now < trained_on):
            return True
        inside = choose(n_now, spec_in_use.dim, exact_below=exact_below)
        return ram is None or 2 * n_now * bytes_per_vector(inside) < ram
    want = place(n_now, spec_in_use.dim, exact_below=exact_below, ram=ram)
    if want.kind == ONDISK:
        return True
    want = choose(n_now, spec_in_use.dim, exact_below=exact_below, memory_budget=memory_budget)
    if spec_in_use.kind != IVFIndex.kind:
        return want.kind != spec_in_use.kind
    if want.kind == FlatIndex.kind:
        trainable = n_now >= MIN_TRAIN_PER_LIST * MIN_NLIST
        return not trainable or n_now < exact_below // 2
    if trained_on > 0 and (n_now > 4 * trained_on or 4 * n_now < trained_on):
        return True
    return (want.pq_m, want.sq) != (spec_in_use.pq_m, spec_in_use.sq)
