"""Time MMR diversification (Ranker.diversify) at page sizes k = 10..200 on synthetic hits.

    python scripts/bench_mmr.py [--repeats 5]

Hits carry random 384-d unit vectors for their best segments (one in ten has a near twin, so
the near-duplicate penalty does work); the catalog lookup is an in-memory dict, so the
figure is the ranking step alone. Prints a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchengine.search import Ranker, RankParams  # noqa: E402
from searchengine.types import Hit  # noqa: E402


def pool(k: int, rng: np.random.Generator) -> tuple[list[Hit], dict[int, np.ndarray]]:
    n = max(k * 3, k + 10)
    vecs = rng.normal(size=(n, 384)).astype(np.float32)
    vecs[1::10] = vecs[0::10][: len(vecs[1::10])] + 0.05 * vecs[1::10]
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    hits = []
    for i in range(n):
        h = Hit(path=f"/f{i}", type="text", score=1.0 - i / (2 * n))
        h.best_segment, h.file_id = i + 1, i + 1
        hits.append(h)
    return hits, {i + 1: v for i, v in enumerate(vecs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print("| k | pool | median ms |\n|---|---|---|")
    for k in (10, 50, 100, 200):
        hits, vectors = pool(k, rng)
        catalog = SimpleNamespace(
            vector_map=lambda ids, level="segment", v=vectors: {i: v[i] for i in ids}
        )
        ranker = Ranker(SimpleNamespace(catalog=catalog), lambda s: None, {}, RankParams())
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ranker.diversify(hits, k)
            times.append((time.perf_counter() - t) * 1000)
        print(f"| {k} | {len(hits)} | {statistics.median(times):.1f} |")
    print(f"\n    python scripts/bench_mmr.py --repeats {args.repeats}")


if __name__ == "__main__":
    main()
