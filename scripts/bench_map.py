"""How long `searchengine map` takes on a big space: a catalog of N files whose whole-file
vectors are random points around C centres on the unit sphere (dimension 512, like CLIP),
mapped the way the command maps them (atlas.build_map: read, PCA, UMAP fitted on a sample
of 10,000, the rest placed by k-NN interpolation, HDBSCAN, c-TF-IDF labels, stored), then
a second run after 1% more files arrive (only they are placed), then a read of the stored
map (what the server does). Random vectors measure time only, never the layout's quality.

    OMP_NUM_THREADS=2 NUMBA_NUM_THREADS=2 .venv/bin/python scripts/bench_map.py \
        --sizes 10000 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from searchengine.atlas.build import build_map, read_map  # noqa: E402
from searchengine.store.catalog import Catalog  # noqa: E402
from searchengine.store.schema import encode_vector  # noqa: E402
from searchengine.types import Filters  # noqa: E402

MODEL = "bench-model"
WORDS = "beach forest city night snow party garden river dog cat car boat sky food".split()


def vectors(n: int, dim: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dim))
    picks = rng.integers(0, centres, size=n)
    out = middle[picks] + rng.normal(scale=0.6, size=(n, dim))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def add_files(catalog: Catalog, rows: np.ndarray, first: int) -> None:
    """Files named after their centre's word (so labels have words to find)."""
    with catalog.transaction() as conn:
        for start in range(0, len(rows), 5000):
            part = rows[start : start + 5000]
            ids = range(first + start, first + start + len(part))
            conn.execute(
                text(
                    "INSERT INTO files(id, path_key, path, type, size, mtime_ns, state) "
                    "VALUES (:id, :key, :path, 'image', 1, 0, 'indexed')"
                ),
                [
                    {
                        "id": i,
                        "key": f"/bench/{i}".encode(),
                        "path": f"/bench/{WORDS[i % len(WORDS)]}/photo-{i}.jpg",
                    }
                    for i in ids
                ],
            )
            conn.execute(
                text(
                    "INSERT INTO file_vectors(file_id, space, model, vector) "
                    "VALUES (:f, 'clip', :m, :v)"
                ),
                [
                    {"f": i, "m": MODEL, "v": encode_vector(v)}
                    for i, v in zip(ids, part, strict=True)
                ],
            )


def one_run(n: int, seed: int, work: Path) -> dict[str, float]:
    folder = work / f"n{n}-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    catalog = Catalog(folder / "catalog.db")
    data = vectors(n + n // 100, 512, 60, seed)
    add_files(catalog, data[:n], 1)
    t, cpu = time.perf_counter(), time.process_time()
    first = build_map(catalog, folder, "clip", MODEL, Filters())
    fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - cpu
    add_files(catalog, data[n:], n + 1)
    t = time.perf_counter()
    second = build_map(catalog, folder, "clip", MODEL, Filters())
    place_s = time.perf_counter() - t
    assert second.placed == n // 100 and second.fitted == 0
    t = time.perf_counter()
    read_map(catalog, "clip", MODEL, Filters())
    read_s = time.perf_counter() - t
    catalog.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "first_s": fit_s,
        "first_cpu_s": fit_cpu,
        "next_s": place_s,
        "read_s": read_s,
        "clusters": len([c for c in first.labels if c >= 0]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="Scratch folder (default: temp).")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-map-"))
    t = time.perf_counter()
    import umap  # noqa: F401 - the import alone

    import_s = time.perf_counter() - t
    t = time.perf_counter()
    from searchengine.atlas.layout import fit

    fit(vectors(200, 512, 5, 0))  # numba compiles UMAP's code once per process
    jit_s = time.perf_counter() - t
    print(json.dumps({"import_umap_s": round(import_s, 2), "first_fit_200_s": round(jit_s, 2)}))
    sys.stdout.flush()
    print(f"load before: {os.getloadavg()}, cpus: {os.cpu_count()}")
    for n in args.sizes:
        runs = [one_run(n, seed, work) for seed in range(args.repeats)]
        row = {"n": n, "repeats": len(runs)}
        for key in ("first_s", "first_cpu_s", "next_s", "read_s", "clusters"):
            row[key] = round(statistics.median(r[key] for r in runs), 2)
        print(json.dumps(row), flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
