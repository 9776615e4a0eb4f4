"""What reading a query costs: the grammar per query, the index's place lookup, dateparser's
import and first parse (paid only by a query with a day in figures), a cold `searchengine
search` with and without the reading (`--literal`, and optionally the code before it), and
the reverse geocoder's first lookup (paid once by an indexing process that meets GPS).

    .venv/bin/python scripts/bench_understand.py --index DIR [--before SRC] [--runs 15]
        [--bytecode] [--skip-cli]

DIR is any index (it is copied to a temporary folder first: a query on an index of an
older format migrates it). SRC is a folder holding an older `searchengine` package to time
as the baseline (e.g. `git archive COMMIT searchengine | tar -x -C SRC`); it gets its own
copy of the index (in format 2 when DIR is in format 3 without places). Cold runs alternate
between the variants, so a busy machine slows each alike; figures are medians in ms, wall
clock and, for the cold command, its CPU time (user + system: on a shared machine the
steadier measure of this single-threaded work).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    "growing vegetables in the garden",  # nothing to read
    "beach photos from last summer",
    "photos from 2019 in Lisbon",
    "tax return 2019",
    "the pdf about my tax return",
    "short sounds of rain",
]
DAY_QUERY = "photos from 04/05/2021"  # a day in figures: the one query that loads dateparser


def grammar_cost(rounds: int) -> dict[str, float]:
    """Median microseconds per query of the grammar alone (no index)."""
    from searchengine.understand import read_query

    now = datetime(2025, 10, 15, 12, 0)
    per: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for q in QUERIES:
            read_query(q, now, lambda keys: {})
        per.append((time.perf_counter() - start) / len(QUERIES) * 1e6)
    return {"grammar_us_per_query": statistics.median(per)}


def place_lookup_cost(index: Path, rounds: int) -> dict[str, float]:
    """Median microseconds per query of reading it against the index (the grammar and the
    one SQL lookup of candidate place names)."""
    from searchengine import Engine

    with Engine(index, readonly=True) as eng:
        eng.read("warm up")
        per = []
        for _ in range(rounds):
            start = time.perf_counter()
            for q in QUERIES:
                eng.read(q)
            per.append((time.perf_counter() - start) / len(QUERIES) * 1e6)
    return {"read_with_index_us_per_query": statistics.median(per)}


IMPORT_PROBE = """
import time, re, datetime, unicodedata, json, dataclasses, calendar, logging, typing
import searchengine  # all of these are loaded by a cold search before it reads the query
t0 = time.process_time(); import searchengine.understand; t1 = time.process_time()
from searchengine.understand import read_query
read_query("growing vegetables in the garden", None, lambda k: {}); t2 = time.process_time()
read_query("beach photos from last summer", None, lambda k: {}); t3 = time.process_time()
print((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
"""


def import_cost(runs: int) -> dict[str, float]:
    """CPU ms in a fresh process, with bytecode cached as an installed package has it (a
    temporary PYTHONPYCACHEPREFIX; PYTHONDONTWRITEBYTECODE=1 would compile every module
    from source on each run): importing the reader, a query without a date or kind word
    (no pattern compiled), the first query with one (its patterns compiled)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        rows = []
        for r in range(runs + 1):
            res = subprocess.run(
                [sys.executable, "-c", IMPORT_PROBE],
                capture_output=True, text=True, env=env, cwd=REPO, check=True,
            )  # fmt: skip
            if r:  # the first run writes the bytecode
                rows.append([float(x) for x in res.stdout.split()])
    names = ("import_cpu_ms", "first_plain_read_cpu_ms", "first_dated_read_cpu_ms")
    return {n: round(statistics.median(r[i] for r in rows), 2) for i, n in enumerate(names)}


def fresh_process_ms(code: str, runs: int) -> float:
    """Median wall time of a fresh interpreter running `code`, less `python -c pass`."""

    def once(body: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", body], check=True, cwd=REPO)
        return time.perf_counter() - start

    spent, empty = [], []
    for _ in range(runs):
        spent.append(once(code))
        empty.append(once("pass"))
    return (statistics.median(spent) - statistics.median(empty)) * 1000


def as_format_2(db: Path) -> None:
    """Format 3 is format 2 plus the `file_places` table: without places, dropping it gives
    the older code an index it reads."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        if conn.execute("PRAGMA user_version").fetchone()[0] != 3:
            return
        if conn.execute("SELECT count(*) FROM file_places").fetchone()[0]:
            raise SystemExit("--before needs an index without places (format 2 has none)")
        conn.execute("DROP TABLE file_places")
        conn.execute("PRAGMA user_version = 2")


def cold_cli(index: Path, before: Path | None, runs: int, bytecode: bool) -> dict[str, object]:
    """Median cold `searchengine search --json -k 10` per variant, alternating; with
    `bytecode`, compiled modules are cached (in a temporary PYTHONPYCACHEPREFIX) as in an
    installed package, else the environment decides (PYTHONDONTWRITEBYTECODE=1 compiles
    every module from source on every run)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-understand-"))
    base = dict(os.environ)
    if bytecode:
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        base["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    variants: dict[str, tuple[list[str], dict[str, str], Path]] = {}
    if before is not None:
        old = tmp / "before"
        shutil.copytree(index, old)
        as_format_2(old / "catalog.db")
        env = dict(base, PYTHONPATH=str(before))
        variants["before (no reading)"] = ([], env, old)
    new = tmp / "after"
    shutil.copytree(index, new)
    variants["after, --literal"] = (["--literal"], base, new)
    variants["after, read"] = ([], base, new)
    exe = str(Path(sys.executable).with_name("searchengine"))
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    queries = [*QUERIES, DAY_QUERY]
    per_query: dict[str, dict[str, list[float]]] = {q: {n: [] for n in variants} for q in queries}
    for r in range(runs + 2):
        for q in queries:
            for name, (extra, env, idx) in variants.items():
                cmd = [exe, "search", q, "--index", str(idx), "--json", "-k", "10", *extra]
                before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
                took = time.perf_counter() - start
                after_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
                used = (after_cpu.ru_utime - before_cpu.ru_utime) + (
                    after_cpu.ru_stime - before_cpu.ru_stime
                )
                if res.returncode != 0:
                    raise SystemExit(f"{name}: {' '.join(cmd)} failed: {res.stderr}")
                if r >= 2:  # two warm-up rounds (page cache, exports)
                    times[name].append(took)
                    cpu[name].append(used)
                    per_query[q][name].append(used)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "cold_cli_wall_ms_median": {
            n: round(statistics.median(t) * 1000, 1) for n, t in times.items()
        },
        "cold_cli_cpu_ms_median": {
            n: round(statistics.median(t) * 1000, 1) for n, t in cpu.items()
        },
        "cold_cli_cpu_ms_by_query": {
            q: {n: round(statistics.median(t) * 1000, 1) for n, t in v.items()}
            for q, v in per_query.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--before", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--skip-cli", action="store_true", help="no cold command runs")
    ap.add_argument("--bytecode", action="store_true", help="cold runs with bytecode cached")
    args = ap.parse_args()
    out: dict[str, object] = {}
    out.update(grammar_cost(200))
    out.update(import_cost(7))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "index"
        shutil.copytree(args.index, copy)
        out.update(place_lookup_cost(copy, 200))
    day = (
        "from datetime import datetime; from searchengine.understand import read_query; "
        f"read_query({DAY_QUERY!r}, datetime(2025, 10, 15), lambda k: {{}})"
    )
    plain = (
        "from datetime import datetime; from searchengine.understand import read_query; "
        f"read_query({QUERIES[1]!r}, datetime(2025, 10, 15), lambda k: {{}})"
    )
    out["fresh_process_read_day_ms"] = round(fresh_process_ms(day, 7), 1)
    out["fresh_process_read_plain_ms"] = round(fresh_process_ms(plain, 7), 1)
    out["fresh_process_geocode_first_ms"] = round(
        fresh_process_ms("from searchengine.geo import place_of; place_of(38.72, -9.14)", 3), 1
    )
    if not args.skip_cli:
        out.update(cold_cli(args.index, args.before, args.runs, args.bytecode))
    out["load_average"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
