"""Vector-index benchmark: build time, query latency, recall@10 after exact re-scoring, file size
and memory of a memory-mapped load, for each index kind on clustered synthetic vectors.

    .venv/bin/python scripts/bench_ann.py --sizes 100000 1000000 --dims 384

For each size and dimension it builds the exact flat index (the baseline), the factory's
default for that size (IVF-SQ4) and the PQ codes a tight memory budget gets, saves each, then
measures each in a fresh process (so the memory figures are that index's alone): load it
memory-mapped, run single queries one at a time on --threads FAISS threads, fetch k x
candidates, re-score them exactly from a float16 copy of the vectors read row by row with
pread (as the catalog holds and serves them; not mapped, so they do not count as the index's
memory) and compare the top 10 with exact search over float32. Prints a Markdown table.
Latencies are wall time; "CPU" is the process CPU time per query, which a busy shared machine
inflates less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from searchengine.store.vectors import build, choose, load  # noqa: E402
from searchengine.store.vectors.factory import bytes_per_vector  # noqa: E402
from searchengine.store.vectors.synthetic import clustered  # noqa: E402

K = 10


def rss_mb() -> dict[str, float]:
    """Current resident memory from /proc: total, anonymous (heap) and file-backed (mmap)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def exact_top(queries: np.ndarray, rows: np.ndarray, k: int, chunk: int = 100_000) -> np.ndarray:
    """Exact top-k ids by inner product, in chunks so 1M rows need no second copy."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(rows), chunk):
        s = queries @ rows[start : start + chunk].T
        s_all = np.concatenate([best_s, s], axis=1)
        i_all = np.concatenate(
            [best_i, np.broadcast_to(np.arange(start, start + s.shape[1]), s.shape)], axis=1
        )
        top = np.argpartition(-s_all, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(s_all, top, axis=1)
        best_i = np.take_along_axis(i_all, top, axis=1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, axis=1)


def child(args: argparse.Namespace) -> None:
    """Measure one saved index in this fresh process; print one JSON line."""
    import faiss

    faiss.omp_set_num_threads(args.threads)
    queries = np.load(args.queries_file)
    truth = np.load(args.truth_file)
    header = np.load(args.vectors_file, mmap_mode="r")  # float16, like the catalog
    dim, offset = header.shape[1], header.offset
    del header
    fd = os.open(args.vectors_file, os.O_RDONLY)
    row_bytes = 2 * dim

    def stored(ids: np.ndarray) -> np.ndarray:
        raw = b"".join(os.pread(fd, row_bytes, offset + int(i) * row_bytes) for i in ids)
        return np.frombuffer(raw, np.float16).reshape(len(ids), dim).astype(np.float32)

    before = rss_mb()
    t0 = time.perf_counter()
    index, state = load(Path(args.child), mmap=True)
    load_ms = (time.perf_counter() - t0) * 1000
    after_load = rss_mb()
    results = []
    nprobes = [index.spec.nprobe] + [p for p in args.nprobe if p != index.spec.nprobe]
    for nprobe in nprobes if index.kind == "ivf" else [0]:
        if nprobe:
            index.spec = replace(index.spec, nprobe=nprobe)
        fetch = K * index.spec.candidates
        for q in queries[:10]:  # warm up
            index.search(q[None], fetch)
        ann, cpu, total, hits = [], [], [], 0
        for i, q in enumerate(queries):
            c0, t0 = time.process_time(), time.perf_counter()
            _, cand = index.search(q[None], fetch)
            c1, t1 = time.process_time(), time.perf_counter()
            cand = np.sort(cand[0][cand[0] >= 0])
            scores = stored(cand) @ q
            top = cand[np.argsort(-scores)[:K]]
            t2 = time.perf_counter()
            ann.append(t1 - t0)
            cpu.append(c1 - c0)
            total.append(t2 - t0)
            hits += len(np.intersect1d(top, truth[i]))
        results.append(
            {
                "nprobe": nprobe,
                "fetch": fetch,
                "ann_p50": float(np.percentile(ann, 50) * 1000),
                "ann_p95": float(np.percentile(ann, 95) * 1000),
                "cpu_p50": float(np.percentile(cpu, 50) * 1000),
                "total_p50": float(np.percentile(total, 50) * 1000),
                "total_p95": float(np.percentile(total, 95) * 1000),
                "recall": hits / (K * len(queries)),
            }
        )
    print(
        json.dumps(
            {
                "load_ms": load_ms,
                "rss_start": before["VmRSS"],
                "rss_load": after_load["VmRSS"],
                "anon_load": after_load["RssAnon"],
                "file_load": after_load["RssFile"],
                **{f"{key}_end": value for key, value in rss_mb().items()},
                "state": state,
                "runs": results,
            }
        )
    )


def bench(n: int, dim: int, args: argparse.Namespace, work: Path) -> list[dict]:
    import faiss

    t0 = time.perf_counter()
    rows = clustered(n + args.queries, dim, noise=args.noise, decay=args.decay, seed=n + dim)
    rows, queries = rows[:n], rows[n:]
    truth = exact_top(queries, rows, K)
    print(f"# n={n} dim={dim}: data and exact top-10 in {time.perf_counter() - t0:.0f} s")
    paths = {
        "vectors": work / f"vectors-{n}-{dim}.npy",
        "queries": work / f"queries-{n}-{dim}.npy",
        "truth": work / f"truth-{n}-{dim}.npy",
    }
    np.save(paths["vectors"], rows.astype(np.float16))
    np.save(paths["queries"], queries)
    np.save(paths["truth"], truth)
    default = choose(n, dim, exact_below=args.exact_below)
    specs = {
        "flat": choose(n, dim, exact_below=n + 1),
        "default": default,
        "pq": choose(n, dim, exact_below=0, memory_budget=n * (dim // 8 + 8)),
    }
    rows_out = []
    for name, spec in specs.items():
        if name not in args.variants:
            continue
        if name != "flat" and spec.kind == "flat":
            continue
        faiss.omp_set_num_threads(args.build_threads)
        index = build(spec, dim)
        cpu0, t0 = time.process_time(), time.perf_counter()
        if spec.train_size:
            pick = np.sort(np.random.default_rng(0).choice(n, spec.train_size, replace=False))
            index.train(rows[pick])
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for start in range(0, n, 100_000):
            stop = min(n, start + 100_000)
            index.add(np.arange(start, stop, dtype=np.int64), rows[start:stop])
        add_s, add_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        path = work / f"{spec.kind}-{spec.pq_m or spec.sq}-{n}-{dim}.index"
        index.save(path, {"max_id": n - 1})
        del index
        size = path.stat().st_size
        print(
            f"#   {name}: train {train_s:.1f} s ({train_cpu:.0f} s CPU), add {add_s:.1f} s "
            f"({add_cpu:.0f} s CPU), {size / n:.0f} bytes/vector",
            flush=True,
        )
        cmd = [sys.executable, __file__, "--child", str(path), "--threads", str(args.threads)]
        for key, value in paths.items():
            cmd += [f"--{key}-file", str(value)]
        cmd += ["--nprobe", *map(str, args.nprobe)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        for run in measured["runs"]:
            print(f"#     {json.dumps(run)}", flush=True)
        rows_out.append(
            {
                "n": n,
                "dim": dim,
                "name": name,
                "spec": spec,
                "train_s": train_s,
                "add_s": add_s,
                "build_cpu": train_cpu + add_cpu,
                "bytes": size / n,
                "model_bytes": bytes_per_vector(spec),
                **measured,
            }
        )
        path.unlink()
    for path in paths.values():
        path.unlink()
    return rows_out


def describe(spec) -> str:
    if spec.kind == "flat":
        return "flat fp16"
    codes = f"PQ{spec.pq_m}x{spec.pq_bits}" if spec.pq_m else f"SQ{spec.sq}"
    return f"IVF{spec.nlist},{codes} nprobe {spec.nprobe}, {spec.candidates}k cand."


def table(results: list[dict]) -> str:
    head = (
        "| n | dim | index | build s (CPU s) | bytes/vec | load ms | RSS MB: before load"
        " / after / after queries (heap+file) / peak | ANN p50/p95 ms (CPU p50) "
        "| ANN + re-score p50/p95 ms | recall@10 |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        for run in r["runs"][:1]:
            lines.append(
                f"| {r['n']:,} | {r['dim']} | {describe(r['spec'])} "
                f"| {r['train_s'] + r['add_s']:.0f} ({r['build_cpu']:.0f}) | {r['bytes']:.0f} "
                f"| {r['load_ms']:.0f} | {r['rss_start']:.0f} / {r['rss_load']:.0f} / "
                f"{r['VmRSS_end']:.0f} ({r['RssAnon_end']:.0f}+{r['RssFile_end']:.0f}) / "
                f"{r['VmHWM_end']:.0f} | {run['ann_p50']:.2f}/{run['ann_p95']:.2f} "
                f"({run['cpu_p50']:.2f}) | {run['total_p50']:.2f}/{run['total_p95']:.2f} "
                f"| {run['recall']:.3f} |"
            )
    sweeps = [(r, run) for r in results for run in r["runs"][1:]]
    if sweeps:
        lines += ["", "| n | dim | index | nprobe | ANN p50/p95 ms (CPU p50) | recall@10 |"]
        lines.append("|" + "---|" * 6)
        for r, run in sweeps:
            lines.append(
                f"| {r['n']:,} | {r['dim']} | {describe(r['spec'])} | {run['nprobe']} "
                f"| {run['ann_p50']:.2f}/{run['ann_p95']:.2f} ({run['cpu_p50']:.2f}) "
                f"| {run['recall']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[384])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2, help="FAISS threads when searching")
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--noise", type=float, default=1.0, help="see ann/synthetic.py")
    parser.add_argument("--decay", type=float, default=0.0, help="0: isotropic (hard case)")
    parser.add_argument("--exact-below", type=int, default=None)
    parser.add_argument("--nprobe", type=int, nargs="*", default=[], help="also try these")
    variants = ["flat", "default", "pq"]
    parser.add_argument("--variants", nargs="+", default=variants, choices=variants)
    parser.add_argument("--work", type=Path, default=REPO / "indexes" / "bench-ann")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    for key in ("vectors", "queries", "truth"):
        parser.add_argument(f"--{key}-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from searchengine.store.vectors.factory import DEFAULT_EXACT_BELOW

    if args.exact_below is None:
        args.exact_below = DEFAULT_EXACT_BELOW
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"# load average at start: {os.getloadavg()}; cores: {os.cpu_count()}")
    results = []
    for dim in args.dims:
        for n in args.sizes:
            results += bench(n, dim, args, args.work)
    print(f"# load average at end: {os.getloadavg()}")
    print(table(results))


if __name__ == "__main__":
    main()
