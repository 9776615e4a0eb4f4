"""Files per second through a local Ray cluster with 1, 2 and 4 worker processes, against a
local run in the same process, and the driver's share of the time (the single writer).

A local Ray cluster (ray.cluster_utils: a head node and a second node, separate processes,
`--cpus` logical CPUs in all, 100 MB object store each) indexes `--files` text files of
real-looking prose (several chunks each) with the index's default text model (the real
all-MiniLM-L6-v2 when installed). Each trial copies a template index whose query exports and
calibration already exist, so only the files' own work is timed:

- embed phase: `ClusterIndexer._process` from the first batch sent to the last commit
  (actor start and model load included, as a user pays them);
- driver commit: time in `Indexer._commit` (the single writer); its ceiling is files
  committed per second of commit time;
- efficiency: (files/s with w workers) / (w x files/s with 1 worker).

Each configuration runs `--repeat` times, interleaved (local, 1, 2, 4, local, 1, ...), so a
change of load during the run touches every configuration alike; medians are reported.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_cluster.py --files 300 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from searchengine import Engine
from searchengine.cluster import ClusterIndexer
from searchengine.indexer import Indexer

WORDS = (
    "budget meeting garden tomatoes planet Jupiter moons database connection server error "
    "pancakes batter flour butter compost seedlings quarter finance travel marketing payroll "
    "orbit telescope Galileo retry postgres port refused morning water raised beds frost"
).split()


def corpus(root: Path, n: int, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    root.mkdir(parents=True)
    for i in range(n):
        sentences = [" ".join(rng.choices(WORDS, k=14)).capitalize() + "." for _ in range(30)]
        (root / f"note{i:05d}.txt").write_text(" ".join(sentences))
    return root


def template(out: Path) -> Path:
    """An index with its query exports and calibration made, and no files of the corpus."""
    seed = out / "seed"
    seed.mkdir()
    (seed / "one.txt").write_text("a single note so the index has a text space")
    with Engine(out / "template", create=True, models={"speech": "off"}) as eng:
        eng.index([seed])
    return out / "template"


def trial(tpl: Path, root: Path, where: Path, workers: int | None, address: str) -> dict:
    shutil.copytree(tpl, where)
    with Engine(where) as eng, eng.writer():
        if workers is None:
            indexer = Indexer(eng.store, eng.models, eng.config, eng.dir)
        else:
            indexer = ClusterIndexer(
                eng.store, eng.models, eng.config, eng.dir, address=address, workers=workers
            )
        spans: dict[str, float] = {}

        def progress(phase: str, done: int, total: int, path: str) -> None:
            if phase == "embed" and done == 0 and "start" not in spans:
                spans["start"] = time.monotonic()
            if phase == "embed" and total and done == total:
                spans["end"] = time.monotonic()

        t0 = time.monotonic()
        cpu0 = time.process_time()
        summary = indexer.run([root], progress)
        run_s = time.monotonic() - t0
        driver_cpu = time.process_time() - cpu0
    embed_s = spans["end"] - spans["start"]
    stats = getattr(indexer, "stats", None)
    return {
        "workers": workers or "local",
        "files": summary.added,
        "embed_s": round(embed_s, 2),
        "files_per_s": round(summary.added / embed_s, 2),
        "run_s": round(run_s, 2),
        "driver_cpu_s": round(driver_cpu, 2),
        "commit_s": round(stats.commit_s, 3) if stats else None,
        "driver_share": round(stats.commit_s / embed_s, 3) if stats else None,
        "writer_ceiling_files_per_s": round(summary.added / stats.commit_s, 1) if stats else None,
        "retried_batches": stats.retried if stats else None,
    }


def median_row(rows: list[dict]) -> dict:
    """Per field, the median over runs of one configuration."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, (int, float)) and key != "workers" and value is not None:
            out[key] = round(statistics.median(r[key] for r in rows), 3)
    out["embed_s_runs"] = [r["embed_s"] for r in rows]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--cpus", type=int, default=4, help="logical CPUs of the local cluster")
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration (medians)")
    args = ap.parse_args()
    os.environ.setdefault("SEARCHENGINE_OFFLINE", "1")
    out = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    half = {"object_store_memory": 100 << 20}
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": args.cpus - args.cpus // 2, "include_dashboard": False, **half},
    )
    try:
        nodes.add_node(num_cpus=args.cpus // 2, **half)
        print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} cores", "load_average": os.getloadavg()}))
        root = corpus(out / "notes", args.files)
        tpl = template(out)
        configs: list[int | None] = [None, *(int(x) for x in args.workers.split(","))]
        runs: dict[str, list[dict]] = {}
        for r in range(args.repeat):
            for w in configs:
                where = out / f"{w or 'local'}-{r}"
                row = trial(tpl, root, where, w, nodes.address)
                shutil.rmtree(where, ignore_errors=True)
                row["load_average"] = os.getloadavg()[0]
                runs.setdefault(str(row["workers"]), []).append(row)
                print(json.dumps(row), flush=True)
        rows = [median_row(runs[str(w or "local")]) for w in configs]
        one = next(r for r in rows if r["workers"] == 1)["files_per_s"]
        for r in rows:
            if r["workers"] != "local":
                r["speedup"] = round(r["files_per_s"] / one, 2)
                r["efficiency"] = round(r["files_per_s"] / (one * r["workers"]), 2)
            print(json.dumps({"median_of": args.repeat, **r}))
        print(json.dumps({"load_average_after": os.getloadavg()}))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        nodes.shutdown()
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
