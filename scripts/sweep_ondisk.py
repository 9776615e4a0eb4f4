"""Recall@10 and search time of a bench_scale index's on-disk caches at other nprobe and
candidate counts (what set factory.PQ_PROBE_FACTOR), against exact search over the catalog.

Build the index first with the budget that puts it on disk, e.g.

    SEARCHENGINE_VECTOR_MEMORY=4M .venv/bin/python scripts/bench_scale.py --sizes 100000 \\
        --out indexes/bench-ondisk --build-only
    OMP_NUM_THREADS=1 .venv/bin/python scripts/sweep_ondisk.py --out indexes/bench-ondisk
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale as bs  # noqa: E402

from searchengine.store.store import Store  # noqa: E402
from searchengine.types import Filters  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("indexes/bench-ondisk"))
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    folder = args.out / f"n{args.size}"
    base = bs.load_base(args.out, bs.load_corpus(args.out), 4000)
    store = Store(folder / "index", readonly=True)
    conn = sqlite3.connect(f"file:{folder / 'index' / 'catalog.db'}?mode=ro", uri=True)
    text_q = base.query_vectors[: args.queries]
    clip_q = bs.normalise(text_q @ bs.clip_projection(text_q.shape[1]))
    runs = (("text", text_q, None), ("clip", clip_q, None), ("text", text_q, bs.FILTER_GLOB))
    for space, queries, glob in runs:
        exact = bs.exact_top(conn, space, queries, 10, glob)
        index = store.cache(space).index
        saved = index.spec
        for factor in (1, 2, 4):
            for candidates in (20, 40):
                spec = replace(
                    saved, nprobe=min(saved.nlist, saved.nprobe * factor), candidates=candidates
                )
                index.spec = spec
                if hasattr(index, "base"):
                    index.base.spec = spec
                got, times = [], []
                for i, q in enumerate(queries):
                    t0 = time.perf_counter()
                    found, _ = store.search(space, q, 10, Filters(path_glob=glob) if glob else None)
                    times.append(time.perf_counter() - t0)
                    want = {int(x) for x in exact[i] if x >= 0}
                    got.append(len(want & {s for s, _ in found}) / max(1, len(want)))
                print(
                    f"{space} {glob or 'unfiltered'} {spec.describe()} nprobe {spec.nprobe} "
                    f"candidates {candidates}: recall@10 {np.mean(got):.3f}, "
                    f"p50 {1000 * float(np.median(times)):.1f} ms",
                    flush=True,
                )
        index.spec = saved
        if hasattr(index, "base"):
            index.base.spec = saved
    store.close()


if __name__ == "__main__":
    main()
