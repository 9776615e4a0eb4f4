"""Benchmark text indexing and querying on a real corpus (>= 10,000 chunks).

    python scripts/bench_text.py samples/bigdocs [--index indexes/bench-text]

Measures, in one run: whole-pipeline indexing (documents/s, chunks/s) against the text
model's pure encoding throughput on the same chunks (the baseline), the no-change re-run
against the full run, and query latency (median, p95) against query embedding alone.
Prints a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from searchengine import Engine  # noqa: E402
from searchengine.store.catalog import segments  # noqa: E402

QUERIES = [
    "how do I read a file line by line",
    "sort a list of dictionaries by a key",
    "create a virtual environment",
    "regular expression to match an email address",
    "difference between a list and a tuple",
    "handle exceptions and clean up resources",
    "format a date as a string",
    "run a shell command and capture its output",
    "parse command line arguments",
    "serialize an object to JSON",
    "create a table with a primary key",
    "add an index to speed up a query",
    "backup and restore a database",
    "grant privileges to a user",
    "explain the query plan",
    "transaction isolation levels",
    "full text search in the database",
    "replicate a server to a standby",
    "vacuum and analyze tables",
    "window functions over partitions",
    "asynchronous tasks with an event loop",
    "threads versus processes",
    "unit testing with mocks",
    "decorators that take arguments",
    "iterate over two lists at the same time",
    "measure how long code takes to run",
    "connection pooling settings",
    "time zones and timestamps",
    "upgrade to a new major version",
    "string formatting with f-strings",
]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--index", type=Path, default=Path("indexes/bench-text"))
    ap.add_argument("--rounds", type=int, default=3, help="query rounds (medians over all)")
    args = ap.parse_args()
    if args.index.exists():
        shutil.rmtree(args.index)

    with Engine(args.index, create=True) as eng:
        t0 = time.perf_counter()
        full = eng.index([args.corpus])
        full_s = time.perf_counter() - t0
        docs = full.added - full.failed - full.skipped
        with eng.catalog.engine.connect() as conn:
            texts = list(conn.execute(select(segments.c.text)).scalars())
        chunks = len(texts)

        encoder = eng.models.encoder("text")
        sample = random.Random(0).sample(texts, min(3000, chunks))
        t0 = time.perf_counter()
        encoder.embed_items(sample)
        pure_rate = len(sample) / (time.perf_counter() - t0)

        reruns = []
        for _ in range(3):
            t0 = time.perf_counter()
            again = eng.index([args.corpus])
            reruns.append(time.perf_counter() - t0)
            assert again.added == again.changed == 0, "re-run embedded something"

        eng.search("warm up", k=10)
        latencies, embeds = [], []
        for _ in range(args.rounds):
            for q in QUERIES:
                t0 = time.perf_counter()
                encoder.embed_queries([q])
                embeds.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                eng.search(q, k=10)
                latencies.append(time.perf_counter() - t0)

    pipe_rate = chunks / full_s
    med, p95, emb = (
        statistics.median(latencies),
        percentile(latencies, 0.95),
        statistics.median(embeds),
    )
    rerun = statistics.median(reruns)
    print(f"""
### Text ({time.strftime("%Y-%m-%d")}, {os.cpu_count()} cores, torch threads {
        os.environ.get("SEARCHENGINE_THREADS", "all")
    })

Corpus: `{args.corpus}`: {full.added} files, {docs} documents indexed, {chunks} chunks
({full.skipped} skipped, {full.failed} failed).

| measure | value | baseline in the same run | ratio |
|---|---|---|---|
| full index | {docs / full_s:.1f} docs/s, {pipe_rate:.1f} chunks/s ({
        full_s:.1f} s) | model alone: {pure_rate:.1f} chunks/s | {pipe_rate / pure_rate:.2f} |
| no-change re-run (median of 3) | {rerun:.2f} s | full index {full_s:.1f} s | {
        rerun / full_s:.4f} |
| query latency, k=10 ({len(latencies)} queries) | median {med * 1000:.1f} ms, p95 {
        p95 * 1000:.1f} ms | query embedding alone: median {emb * 1000:.1f} ms | {med / emb:.2f} |
""")  # noqa: E501


if __name__ == "__main__":
    main()
