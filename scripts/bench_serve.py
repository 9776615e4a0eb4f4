"""Search over HTTP: p50/p95 latency and throughput with 1, 8 and 32 concurrent clients.

    OMP_NUM_THREADS=1 python scripts/bench_serve.py --index indexes/bench-serve/n100000/index

The index is one built by scripts/bench_scale.py (100k segments: real bigdocs passages,
jittered MiniLM vectors, a 512-d clip space with a random ViT-B-32 query tower), and the
queries are that script's real page titles (its `base.npz`, two folders up). In one run:

1. baseline: `Engine.search(q, k=10)` in this process, read-only, after warm-ups: median and
   p95 over the queries (what a query costs without HTTP);
2. `searchengine serve --index ... --port 0 --parallel P` started as its own process (as a
   user runs it), once per P compared (default 1 and 2); the floor of HTTP:
   `GET /api/files/1` (one catalog row) from one client;
3. `GET /api/search?q=...&k=10` from 1, 8 and 32 concurrent clients (asyncio + httpx, one
   keep-alive connection each, queries taken in turn), after a warm-up: per-request latency
   measured by the client from send to full JSON body, p50/p95, and requests per second over
   the wall time of the whole batch. Answers other than 200 are counted as errors; pages
   without hits are counted too (two of the titles read as `type=audio`, and this index
   holds no audio: in process they come back empty as well).

Clients and server share this machine's cores, so the client's own CPU is in the figures.
Results: `<index>/serve-bench.json` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

K = 10
WARMUP = 10


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def load_queries(index: Path, explicit: Path | None) -> list[str]:
    source = explicit or index.parent.parent / "base.npz"
    if not source.exists():
        sys.exit(f"no queries at {source}: build the index with scripts/bench_scale.py first")
    return [str(q) for q in np.load(source, allow_pickle=False)["queries"]]


def baseline(index: Path, queries: list[str]) -> dict[str, float]:
    """In-process Engine.search: the cost of a query without HTTP."""
    from searchengine import Engine

    with Engine(index, readonly=True) as engine:
        for q in queries[:WARMUP]:
            engine.search(q, k=K)
        times = []
        for q in queries:
            started = time.perf_counter()
            engine.search(q, k=K)
            times.append(time.perf_counter() - started)
    return {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * percentile(times, 95)}


def start_server(index: Path, parallel: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("SEARCHENGINE_TOKEN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "searchengine.cli",
            "serve",
            "--index",
            str(index),
            "--port",
            "0",
            "--parallel",
            str(parallel),
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("serving "):
        proc.kill()
        sys.exit(f"the server did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
    url = line.split(" at ")[1].split()[0].rstrip("/")
    return proc, url


async def load(url: str, path: str, params: list[dict], clients: int) -> dict[str, float]:
    """`len(params)` requests from `clients` concurrent clients; latency per request."""
    import httpx

    latencies: list[float] = []
    errors = empty = 0
    todo = iter(params)

    async def client() -> None:
        nonlocal errors, empty
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            for p in todo:
                started = time.perf_counter()
                r = await http.get(path, params=p)
                body = r.json()
                latencies.append(time.perf_counter() - started)
                errors += r.status_code != 200
                empty += r.status_code == 200 and body.get("hits") == []

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "empty": empty,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentile(latencies, 95),
        "per_s": len(latencies) / wall,
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=Path("indexes/bench-serve/n100000/index"))
    ap.add_argument("--queries", type=Path, help="a base.npz of bench_scale (default: beside)")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=320, help="requests per concurrency")
    ap.add_argument("--parallel", default="1,2", help="serve --parallel values to compare")
    args = ap.parse_args()
    index = args.index.resolve()
    queries = load_queries(index, args.queries)
    command = "python scripts/bench_serve.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()[0]
    print(f"{len(queries)} queries; baseline in process…", flush=True)
    base = baseline(index, queries)
    print(json.dumps({"baseline": base}), flush=True)
    search = [{"q": queries[i % len(queries)], "k": K} for i in range(args.requests)]
    runs = []
    floor: dict[str, float] = {}
    for parallel in [int(p) for p in args.parallel.split(",")]:
        proc, url = start_server(index, parallel)
        try:
            asyncio.run(load(url, "/api/search", search[:WARMUP], 1))
            if not floor:
                floor = asyncio.run(load(url, "/api/files/1", [{}] * 200, 1))
                print(json.dumps({"http_floor": floor}), flush=True)
            for clients in [int(c) for c in args.clients.split(",")]:
                result = asyncio.run(load(url, "/api/search", search, clients))
                result["parallel"] = parallel
                runs.append(result)
                print(json.dumps(result), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    results = {
        "command": command,
        "index": str(args.index),
        "queries": len(queries),
        "k": K,
        "baseline": base,
        "http_floor": floor,
        "runs": runs,
        "load_average": [load_before, os.getloadavg()[0]],
    }
    (index / "serve-bench.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(report(results))


def report(r: dict) -> str:
    b = r["baseline"]
    lines = [
        f"`{r['command']}` ({r['queries']} real page-title queries, k={r['k']})",
        "",
        f"- in-process `Engine.search`: p50 {b['p50_ms']:.1f} ms, p95 {b['p95_ms']:.1f} ms "
        f"(one query at a time: at most {1000 / b['p50_ms']:.0f} queries/s)",
        f"- HTTP floor (`GET /api/files/1`, 1 client): p50 {r['http_floor']['p50_ms']:.1f} ms",
        "- 1-minute load average at start / end (the machine is shared): "
        + " / ".join(f"{x:.1f}" for x in r["load_average"]),
        "",
        "| --parallel | clients | requests | p50 ms | p95 ms | p50 / in-process | queries/s "
        "| errors | empty |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in r["runs"]:
        lines.append(
            f"| {run['parallel']} | {run['clients']} | {run['requests']} | {run['p50_ms']:.1f} "
            f"| {run['p95_ms']:.1f} "
            f"| {run['p50_ms'] / b['p50_ms']:.2f}x | {run['per_s']:.1f} | {run['errors']} "
            f"| {run['empty']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
