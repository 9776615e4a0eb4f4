"""Recall of the sharded on-disk IVF-PQ (searchengine/store/vectors/ondisk.py) against exact
search, at each size given, under a memory budget in bytes per vector.

Vectors: a Gaussian mixture on the unit sphere (2,000 centres, noise of total norm 0.8, so
mean cosine to a centre ~0.78): harder than real embeddings' clusters, easier than uniform
noise. Queries are 200 held-out vectors from the same mixture. Exact top-10 comes from a
float32 flat scan. For each size the script reports the plan (nlist, codes, nprobe), build
time (train, fill shards, merge), disk bytes per vector, recall@10 of the raw PQ top 10, and
recall@10 after re-scoring `candidates` x 10 PQ hits exactly (what Store.search does).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_ondisk.py --sizes 100000,300000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from searchengine.store.vectors.ondisk import OnDiskIVFIndex, build, plan

DIM = 384
CENTRES = 2000
QUERIES = 200
SHARD = 50_000


def mixture(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = np.empty((n, DIM), np.float32)
    for start in range(0, n, SHARD):
        part = centres[rng.integers(0, CENTRES, min(SHARD, n - start))]
        part = part + rng.normal(size=part.shape).astype(np.float32) * (0.8 / np.sqrt(DIM))
        rows[start : start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return rows


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    hits = [len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits))


def measure(n: int, budget: int, out: Path, parallel: bool) -> dict:
    rows = mixture(n + QUERIES, seed=n)
    queries, rows = rows[:QUERIES], rows[QUERIES:]
    ids = np.arange(n, dtype=np.int64)
    spec = plan(n, DIM, memory_budget=budget * n)
    rng = np.random.default_rng(1)
    sample = rows[rng.choice(n, min(n, spec.train_size), replace=False)]

    def shards():
        for start in range(0, n, SHARD):
            yield ids[start : start + SHARD], rows[start : start + SHARD]

    t0 = time.monotonic()
    where = build(out / f"n{n}", spec, sample, shards, parallel=parallel)
    build_s = time.monotonic() - t0
    disk = sum(p.stat().st_size for p in where.iterdir())
    index = OnDiskIVFIndex.open(where, base_max_id=int(ids.max()))
    exact = np.argsort(-(queries @ rows.T), axis=1)[:, :10]
    t0 = time.monotonic()
    _, raw = index.search(queries, 10)
    search_ms = (time.monotonic() - t0) * 1000 / QUERIES
    _, cand = index.search(queries, 10 * spec.candidates)
    rescored = []
    for q, c in zip(queries, cand, strict=True):
        c = c[c >= 0]
        rescored.append(c[np.argsort(-(rows[c] @ q))[:10]])
    return {
        "n": n,
        "plan": f"IVF{spec.nlist},PQ{spec.pq_m}x{spec.pq_bits} nprobe {spec.nprobe}"
        if spec.pq_m
        else f"IVF{spec.nlist},SQ{spec.sq} nprobe {spec.nprobe}",
        "budget_bytes_per_vector": budget,
        "shards": -(-n // SHARD),
        "build_s": round(build_s, 1),
        "disk_bytes_per_vector": round(disk / n, 1),
        "search_ms_per_query": round(search_ms, 2),
        "recall@10_raw": round(recall(raw, exact), 3),
        f"recall@10_rescored_{spec.candidates}k": round(recall(rescored, exact), 3),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000")
    ap.add_argument("--budget", type=int, default=56, help="bytes per vector (codes + id)")
    ap.add_argument("--cluster", help="fill shards as Ray tasks on this cluster (or 'auto')")
    args = ap.parse_args()
    if args.cluster:
        import ray

        ray.init(address=args.cluster, logging_level="ERROR", log_to_driver=False)
    out = Path(tempfile.mkdtemp(prefix="bench-ondisk-"))
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            print(json.dumps(measure(n, args.budget, out, bool(args.cluster))), flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
