"""Scale benchmark: indexes of 10k, 100k and 1M segments, built from real passages.

    python scripts/bench_scale.py --sizes 10000,100000,1000000 --out indexes/bench-scale [--reuse]

No model embeds a million passages on this machine (all-MiniLM-L6-v2 runs ~18 chunks/s), so
each index is built from a few thousand real chunks of samples/bigdocs (fetch them with
`scripts/fetch_samples.py bigdocs`), embedded once with the real all-MiniLM-L6-v2 and cached
(`<out>/base.npz`), then jittered to reach the size: v = normalise(base + noise) with a
Gaussian of total norm `--sigma` (mean cosine to the base is reported). Every text segment
carries a real chunk of its base's own page, so FTS5 sees real text and real statistics, and
its file is written to disk with that text, so `searchengine index` can walk it. The clip
space holds 512-d vectors made the same way from a random projection of the real text
embeddings (no real CLIP weights here); its query tower is the real ViT-B-32 architecture
with random weights, so the query process loads and runs what a real one would.

The catalog is written through the Store's own API (`Catalog.write_file` in transactions of
2,000 files), the FAISS caches by `Store.sync`, and the ONNX query export and calibration by
one real `searchengine index` run over one small real text file. Then, per size:

- cold CLI search: `searchengine search QUERY --index DIR --json -k 10` as a subprocess,
  process start to exit after the JSON is printed, median of 5 queries after one warm-up run
  (model and index files in the OS page cache); whether that process imported torch;
- warm p50/p95 of `Engine.search` in one process (200 queries, k=10, after 5 warm-ups),
  unfiltered, with `types=["text"]` and with a path glob selecting one folder of 50;
- recall@10 of the engine's vector route (`Store.search`, k=10) against exact search over
  the catalog's own vectors, per space, unfiltered and with the path filter;
- open time (Engine(readonly) + first cache refresh), peak RSS of the CLI query process and
  of the warm query process, disk bytes per segment (split by part with SQLite's dbstat);
- a no-change re-index of the text files on disk, run as a user runs it (`searchengine
  index FOLDER`, process start to printed summary, median of 3), beside `python -c pass` and
  `searchengine --help` in the same run.

Results go to `<out>/results-<size>.json`; a Markdown report of every size measured so far is
printed and written to `<out>/scale.md`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

BIGDOCS = REPO / "samples" / "bigdocs"
VIT_CKPT = REPO / "indexes" / "vit-b-32-random.pt"
TIME = "/usr/bin/time"  # GNU time: peak RSS and CPU time of a command
TEXT_SHARE = 0.8  # the text space holds 80% of the segments, the clip space 20%
SEGS_PER_FILE = tuple(range(1, 16))  # text files cycle through 1..15 chunks (mean 8)
GROUPS = 50  # text files in docs/group-00..49, images in photos/album-00..49
FILTER_GLOB = "*/group-07/*"  # one folder of 50: 2% of the text files
TXN_FILES = 2000
CLIP_DIM = 512
N_QUERIES = 200
N_WARMUP = 5
N_COLD = 5
MODE_BUDGET_S = 300.0  # a query mode stops early (and says how many it ran) past this
TARGETS = {
    "cold_100k": 1.0,
    "cold_1m": 2.0,
    "p50": 0.030,
    "p95": 0.080,
    "recall": 0.95,
    "rss": 1 << 30,
    "bytes_text_seg": 2048,
    "reindex": 5.0,
}


# ---- real passages -------------------------------------------------------------------------


def load_corpus(out: Path) -> dict[str, Any]:
    """The engine's own chunks of every bigdocs page, and each page's cleaned title (cached)."""
    cache = out / "corpus.json"
    if cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    from eval_retrieval import clean_title

    from searchengine.config import IndexConfig
    from searchengine.media import decode_file

    pages = sorted(BIGDOCS.rglob("*.html"))
    if not pages:
        sys.exit(f"no HTML pages under {BIGDOCS}: run scripts/fetch_samples.py bigdocs")
    config = IndexConfig()
    docs = []
    started = time.perf_counter()
    for page in pages:
        try:
            decoded = decode_file(str(page), config)
        except Exception:  # an empty page is skipped by the engine too
            continue
        chunks = [s.text for s in decoded.segments if s.text and s.text.strip()]
        if chunks:
            title = clean_title(str(decoded.meta.get("title") or ""))
            docs.append({"page": str(page.relative_to(BIGDOCS)), "title": title, "chunks": chunks})
    corpus = {"docs": docs, "seconds": round(time.perf_counter() - started, 1)}
    out.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(corpus), encoding="utf-8")
    return corpus


@dataclass
class Base:
    """The embedded real chunks (bases), which page each came from, and the query set."""

    vectors: np.ndarray  # (n, 384) all-MiniLM-L6-v2 item embeddings
    doc: np.ndarray  # page index of each base
    chunk: np.ndarray  # chunk index inside that page
    queries: list[str]  # N_QUERIES measured queries, then warm-up and cold-CLI queries
    query_vectors: np.ndarray  # (len(queries), 384) query embeddings (full model)
    seconds: float  # embedding time when the cache was made


def load_base(out: Path, corpus: dict[str, Any], n_base: int) -> Base:
    """Embed `n_base` seeded random chunks and the queries once; later runs read the cache."""
    cache = out / "base.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if len(z["vectors"]) == n_base:
            return Base(
                z["vectors"],
                z["doc"],
                z["chunk"],
                [str(q) for q in z["queries"]],
                z["query_vectors"],
                float(z["seconds"]),
            )
    from searchengine.config import IndexConfig
    from searchengine.encoders.registry import ModelRegistry

    docs = corpus["docs"]
    pairs = [(d, c) for d, doc in enumerate(docs) for c in range(len(doc["chunks"]))]
    rng = random.Random(0)
    picked = sorted(rng.sample(pairs, min(n_base, len(pairs))))
    titles = sorted({doc["title"] for doc in docs if doc["title"]})
    queries = rng.sample(titles, N_QUERIES + N_WARMUP + N_COLD + 1)
    encoder = ModelRegistry(IndexConfig()).encoder("text")
    started = time.perf_counter()
    rows = []
    for i in range(0, len(picked), 64):
        batch = [docs[d]["chunks"][c] for d, c in picked[i : i + 64]]
        rows.append(encoder.embed_items(batch))
        done = i + len(batch)
        rate = done / (time.perf_counter() - started)
        print(f"  embedded {done}/{len(picked)} chunks ({rate:.1f}/s)", flush=True)
    seconds = time.perf_counter() - started
    vectors = np.vstack(rows).astype(np.float32)
    query_vectors = encoder.embed_queries(queries).astype(np.float32)
    np.savez(
        cache,
        vectors=vectors,
        doc=np.array([d for d, _ in picked], np.int32),
        chunk=np.array([c for _, c in picked], np.int32),
        queries=np.array(queries),
        query_vectors=query_vectors,
        seconds=np.float64(seconds),
    )
    return load_base(out, corpus, n_base)


def normalise(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows


def clip_projection(dim_in: int) -> np.ndarray:
    """A fixed random projection text (384-d) -> clip (512-d): keeps the real clusters."""
    rng = np.random.default_rng(512)
    return (rng.standard_normal((dim_in, CLIP_DIM)) / np.sqrt(dim_in)).astype(np.float32)


def jitter(bases: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """normalise(base + noise), the noise a Gaussian of expected norm sigma."""
    noise = rng.standard_normal(bases.shape, dtype=np.float32)
    noise *= sigma / np.sqrt(bases.shape[1])
    return normalise(bases + noise)


# ---- building an index ---------------------------------------------------------------------


@dataclass
class Run:
    """One command: wall seconds from start to exit, CPU seconds (user + system), peak RSS."""

    wall: float
    cpu: float
    rss: int
    stdout: str
    stderr: str


def run_cli(args: list[str]) -> Run:
    """Run a command under /usr/bin/time (a child's own ru_maxrss would include this big
    parent's: Linux keeps the pre-exec high-water mark); exits the benchmark if it fails."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as usage,
    ):
        started = time.perf_counter()
        proc = subprocess.run(
            [TIME, "-f", "%M %U %S", "-o", usage.name, *args], stdout=out, stderr=err, cwd=REPO
        )
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        fields = usage.read().split()
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(args)}\n{stderr[-2000:]}")
    rss_kb, user, system = fields[-3:]
    return Run(wall, float(user) + float(system), int(rss_kb) * 1024, stdout, stderr)


def searchengine_bin() -> str:
    return str(Path(sys.executable).parent / "searchengine")


def build(size: int, folder: Path, base: Base, corpus: dict[str, Any], sigma: float) -> dict:
    """Write the catalog, the files on disk, the FAISS caches and the query export."""
    from searchengine import Engine
    from searchengine.config import IndexConfig
    from searchengine.crawler import file_hash
    from searchengine.encoders.registry import SPACES
    from searchengine.store.catalog import NewFile
    from searchengine.store.store import Store
    from searchengine.types import Segment

    if not VIT_CKPT.exists():
        from bench_images import random_vit_b_32

        random_vit_b_32(VIT_CKPT)
    shutil.rmtree(folder, ignore_errors=True)
    index_dir, docs_dir = folder / "index", folder / "files" / "docs"
    Engine(index_dir, create=True, clip_pretrained=str(VIT_CKPT)).close()
    config = IndexConfig.load(index_dir)
    models = {s: config.model_key(s) for s in SPACES}

    n_text = int(round(size * TEXT_SHARE))
    n_clip = size - n_text
    counts: list[int] = []
    while sum(counts) < n_text:
        counts.append(SEGS_PER_FILE[len(counts) % len(SEGS_PER_FILE)])
    counts[-1] -= sum(counts) - n_text
    rng = np.random.default_rng(size)
    kinds = np.array(["text"] * len(counts) + ["image"] * n_clip)
    rng.shuffle(kinds)  # text and image files interleaved, as a real library's walk finds them
    docs = corpus["docs"]
    by_doc: dict[int, list[int]] = {}
    for i, d in enumerate(base.doc.tolist()):
        by_doc.setdefault(d, []).append(i)
    doc_ids = np.array(sorted(by_doc))
    doc_weight = np.array([len(by_doc[d]) for d in doc_ids], np.float64)
    doc_weight /= doc_weight.sum()
    clip_base = normalise(base.vectors @ clip_projection(base.vectors.shape[1]))
    cos_text: list[float] = []
    cos_clip: list[float] = []

    store = Store(index_dir)
    t_files = t_vectors = t_catalog = 0.0
    text_no = image_no = 0
    started = time.perf_counter()
    for start in range(0, len(kinds), TXN_FILES):
        batch = []  # (NewFile, segments, vectors)
        for kind in kinds[start : start + TXN_FILES]:
            if kind == "text":
                t0 = time.perf_counter()
                n = counts[text_no]
                d = int(rng.choice(doc_ids, p=doc_weight))
                own = by_doc[d]
                first = int(rng.integers(len(own)))
                bases = [own[(first + j) % len(own)] for j in range(n)]
                chunks = docs[d]["chunks"]
                offset = int(rng.integers(len(chunks)))
                texts = [chunks[(offset + j) % len(chunks)] for j in range(n)]
                segs, pos = [], 0
                for t in texts:
                    segs.append(
                        Segment(space="text", kind="chunk", start=pos, end=pos + len(t), text=t)
                    )
                    pos += len(t) + 2
                content = "\n\n".join(texts)
                path = docs_dir / f"group-{text_no % GROUPS:02d}" / f"doc-{text_no:06d}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
                st = path.stat()
                record = NewFile(
                    path_key=os.fsencode(str(path)),
                    path=str(path),
                    type="text",
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha=file_hash(str(path)),
                    state="indexed",
                    meta={"encoding": "utf-8", "chars": len(content)},
                )
                t1 = time.perf_counter()
                vecs = jitter(base.vectors[bases], sigma, rng)
                cos_text.extend((vecs * base.vectors[bases]).sum(axis=1)[:4].tolist())
                t_files += t1 - t0
                t_vectors += time.perf_counter() - t1
                text_no += 1
            else:
                t1 = time.perf_counter()
                b = int(rng.integers(len(clip_base)))
                vecs = jitter(clip_base[b : b + 1], sigma, rng)
                cos_clip.append(float(vecs[0] @ clip_base[b]))
                album = image_no % GROUPS
                path = (
                    folder / "files" / "photos" / f"album-{album:02d}" / f"img-{image_no:06d}.jpg"
                )
                record = NewFile(
                    path_key=os.fsencode(str(path)),
                    path=str(path),
                    type="image",
                    size=int(rng.integers(50_000, 4_000_000)),
                    mtime_ns=int(time.time_ns() - rng.integers(0, 5 * 365 * 86400) * 10**9),
                    sha=hashlib.blake2b(str(path).encode(), digest_size=20).hexdigest(),
                    state="indexed",
                    meta={"format": "jpeg", "width": 4032, "height": 3024},
                )
                segs = [Segment(space="clip", kind="image")]
                t_vectors += time.perf_counter() - t1
                image_no += 1
            batch.append((record, segs, list(vecs)))
        t0 = time.perf_counter()
        with store.catalog.transaction() as conn:
            for record, segs, vecs in batch:
                store.catalog.write_file(conn, record, segs, vecs, models)
        t_catalog += time.perf_counter() - t0
        done = min(start + TXN_FILES, len(kinds))
        if done % 20_000 < TXN_FILES or done == len(kinds):
            rate = done / (time.perf_counter() - started)
            print(f"  {size}: {done}/{len(kinds)} files written ({rate:.0f} files/s)", flush=True)
    t0 = time.perf_counter()
    store.sync(SPACES)
    t_sync = time.perf_counter() - t0
    store.close()

    seed = folder / "seed"
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "notes.txt").write_text(docs[0]["chunks"][0], encoding="utf-8")
    export_run = run_cli(
        [searchengine_bin(), "index", str(seed), "--index", str(index_dir), "--json"]
    )
    exports = sorted(p.name for p in (index_dir / "query-models").iterdir() if p.is_dir())
    info = {
        "size": size,
        "sigma": sigma,
        "text_segments": n_text,
        "clip_segments": n_clip,
        "text_files": len(counts),
        "image_files": n_clip,
        "mean_cos_to_base_text": float(np.mean(cos_text)),
        "mean_cos_to_base_clip": float(np.mean(cos_clip)),
        "seconds_files_on_disk": round(t_files, 1),
        "seconds_vectors": round(t_vectors, 1),
        "seconds_catalog": round(t_catalog, 1),
        "seconds_sync": round(t_sync, 1),
        "seconds_export_run": round(export_run.wall, 1),
        "export_run_summary": json.loads(export_run.stdout),
        "query_exports": exports,
        "caches": cache_specs(index_dir),
    }
    (folder / "built.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


# ---- measurements in child processes -------------------------------------------------------


def child(mode: str, folder: Path, out: Path, n_base: int) -> dict:
    """Run one measurement in a fresh process; its result and its own peak RSS."""
    run = run_cli(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--out",
            str(out),
            "--folder",
            str(folder),
            "--base-chunks",
            str(n_base),
        ]
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["peak_rss"] = run.rss
    result["wall"] = run.wall
    return result


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def child_open(folder: Path) -> dict:
    t0 = time.perf_counter()
    from searchengine import Engine

    t1 = time.perf_counter()
    c1 = time.process_time()
    eng = Engine(folder / "index", readonly=True)
    t2 = time.perf_counter()
    for space in ("text", "clip"):
        eng.store.cache(space)
    t3 = time.perf_counter()
    cpu = time.process_time() - c1
    eng.close()
    return {"import": t1 - t0, "engine": t2 - t1, "caches": t3 - t2, "open": t3 - t1, "cpu": cpu}


def child_warm(folder: Path, base: Base) -> dict:
    """Warm latency in one process: query embedding alone, the whole `Engine.search`, and
    the search with the query vectors already computed (retrieval and ranking only)."""
    from searchengine import Engine
    from searchengine.encoders.registry import SPACES
    from searchengine.engine import make_filters
    from searchengine.search import Query, Ranker

    eng = Engine(folder / "index", readonly=True)
    queries = base.queries[:N_QUERIES]
    warmup = base.queries[N_QUERIES : N_QUERIES + N_WARMUP]
    result: dict[str, Any] = {}
    encoders = {space: eng.models.query_encoder(space) for space in ("text", "clip")}
    result["encoders"] = {space: type(enc).__name__ for space, enc in encoders.items()}
    vectors: dict[str, dict[str, np.ndarray]] = {q: {} for q in queries + warmup}
    for space, enc in encoders.items():
        for q in warmup:
            vectors[q][space] = enc.embed_queries([q])[0]
        times, cpu = [], []
        for q in queries:
            c0 = time.process_time()
            t0 = time.perf_counter()
            vectors[q][space] = enc.embed_queries([q])[0]
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        result[f"embed_{space}"] = {
            "p50": pct(times, 50),
            "p95": pct(times, 95),
            "cpu_p50": pct(cpu, 50),
        }

    class Precomputed:
        def __init__(self, space: str) -> None:
            self.space = space

        def embed_queries(self, texts: list[str]) -> np.ndarray:
            return np.stack([vectors[t][self.space] for t in texts])

    def encoder_for(space: str) -> Any:
        return Precomputed(space) if space in encoders else eng.models.query_encoder(space)

    models = {s: eng.config.model_key(s) for s in SPACES}
    ranker = Ranker(eng.store, encoder_for, models, eng.params)
    modes: dict[str, dict[str, Any]] = {
        "unfiltered": {},
        "type": {"types": ["text"]},
        "path": {"path": FILTER_GLOB},
    }
    for label, kwargs in modes.items():
        filters = make_filters(kwargs.get("types"), kwargs.get("path"), None, None, None, None)
        for q in warmup:
            eng.search(q, k=10, **kwargs)
            ranker.run_query(Query(text=q, k=10, filters=filters))
        times, cpu, retrieval, retrieval_cpu, counts, wrong = [], [], [], [], [], 0
        started = time.perf_counter()
        for q in queries:
            if time.perf_counter() - started > MODE_BUDGET_S:
                break
            c0 = time.process_time()
            t0 = time.perf_counter()
            hits = eng.search(q, k=10, **kwargs)
            t1 = time.perf_counter()
            cpu.append(time.process_time() - c0)
            c1 = time.process_time()
            ranker.run_query(Query(text=q, k=10, filters=filters))
            retrieval.append(time.perf_counter() - t1)
            retrieval_cpu.append(time.process_time() - c1)
            times.append(t1 - t0)
            counts.append(len(hits))
            if label == "type":
                wrong += sum(h.type != "text" for h in hits)
            if label == "path":
                wrong += sum("/group-07/" not in h.path for h in hits)
        result[label] = {
            "p50": pct(times, 50),
            "p95": pct(times, 95),
            "cpu_p50": pct(cpu, 50),
            "retrieval_p50": pct(retrieval, 50),
            "retrieval_p95": pct(retrieval, 95),
            "retrieval_cpu_p50": pct(retrieval_cpu, 50),
            "queries": len(times),
            "mean_hits": float(np.mean(counts)),
            "outside_filter": wrong,
        }
    eng.close()
    return result


def exact_top(
    conn: sqlite3.Connection, space: str, queries: np.ndarray, k: int, glob: str | None
) -> np.ndarray:
    """Exact top-k ids per query over the catalog's own (float16) vectors, streamed."""
    from searchengine.store.schema import decode_vectors

    best_ids = np.full((len(queries), 0), -1, np.int64)
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    sql = "SELECT s.id, s.vector FROM segments s"
    params: list[Any] = [space]
    if glob:
        sql += " JOIN files f ON f.id = s.file_id"
    sql += " WHERE s.space = ? AND s.vector IS NOT NULL AND s.id > ?"
    if glob:
        sql += " AND f.path GLOB ?"
    sql += " ORDER BY s.id LIMIT 50000"
    last = 0
    while True:
        args = params + [last] + ([glob] if glob else [])
        rows = conn.execute(sql, args).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        ids = np.array([r[0] for r in rows], np.int64)
        sims = queries @ decode_vectors([r[1] for r in rows]).T
        all_ids = np.hstack([best_ids, np.broadcast_to(ids, (len(queries), len(ids)))])
        all_scores = np.hstack([best_scores, sims.astype(np.float32)])
        top = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_ids = np.take_along_axis(all_ids, top, axis=1)
        best_scores = np.take_along_axis(all_scores, top, axis=1)
    return best_ids


def child_recall(folder: Path, base: Base) -> dict:
    from searchengine.store.store import Store
    from searchengine.types import Filters

    store = Store(folder / "index", readonly=True)
    conn = sqlite3.connect(f"file:{folder / 'index' / 'catalog.db'}?mode=ro", uri=True)
    text_q = base.query_vectors[:N_QUERIES]
    clip_q = normalise(text_q @ clip_projection(text_q.shape[1]))
    result: dict[str, Any] = {}
    for space, qv in (("text", text_q), ("clip", clip_q)):
        for label, glob in (("unfiltered", None), ("path", FILTER_GLOB)):
            if space == "clip" and glob:
                continue
            filters = Filters(path_glob=glob) if glob else None
            exact = exact_top(conn, space, qv, 10, glob)
            got, times = [], []
            for i, q in enumerate(qv):
                if sum(times) > MODE_BUDGET_S:
                    break
                t0 = time.perf_counter()
                found, _ = store.search(space, q, 10, filters)
                times.append(time.perf_counter() - t0)
                want = {int(x) for x in exact[i] if x >= 0}
                got.append(len(want & {sid for sid, _ in found}) / max(1, len(want)))
            kind = store.cache(space).index.spec.kind
            result[f"{space}_{label}"] = {
                "recall": float(np.mean(got)),
                "index": kind,
                "queries": len(got),
                "search_p50": pct(times, 50),
            }
    store.close()
    return result


# ---- disk ----------------------------------------------------------------------------------


def disk_usage(index_dir: Path, info: dict) -> dict:
    """Bytes of the catalog (by part, from dbstat) and of each FAISS file."""
    db = index_dir / "catalog.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    parts: dict[str, int] = {}
    for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
        if name.startswith("segment_fts"):
            group = "segment FTS5"
        elif name == "segments":
            group = "segments table (text, float16 vectors)"
        elif name.startswith("ix_segments") or name == "sqlite_autoindex_segments_1":
            group = "segment indexes"
        elif name.startswith("file_fts"):
            group = "file-name FTS5"
        elif "file_vectors" in name:
            group = "whole-file vectors"
        else:
            group = "files table and other"
        parts[group] = parts.get(group, 0) + int(size)
    per_space = {
        space: (n, int(t or 0), int(v or 0))
        for space, n, t, v in conn.execute(
            "SELECT space, COUNT(*), SUM(LENGTH(text)), SUM(LENGTH(vector)) FROM segments "
            "GROUP BY space"
        )
    }
    free = (
        conn.execute("PRAGMA freelist_count").fetchone()[0]
        * conn.execute("PRAGMA page_size").fetchone()[0]
    )
    conn.close()
    files = {p.name: p.stat().st_size for p in index_dir.glob("*.faiss")}
    wal = index_dir / "catalog.db-wal"
    total_db = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    total = total_db + sum(files.values())
    segs = info["text_segments"] + info["clip_segments"]
    # per text segment: its share of the segments table (by payload bytes), all of the segment
    # FTS5, the segment indexes by row count, the file-level tables by file count, text.* FAISS
    n_text, text_bytes, text_vec = per_space.get("text", (0, 0, 0))
    payload = sum(t + v for _, t, v in per_space.values()) or 1
    row_share = n_text / max(1, segs)
    file_share = info["text_files"] / max(1, info["text_files"] + info["image_files"])
    text_part = (
        parts.get("segments table (text, float16 vectors)", 0) * (text_bytes + text_vec) / payload
        + parts.get("segment FTS5", 0)
        + parts.get("segment indexes", 0) * row_share
        + (
            parts.get("whole-file vectors", 0)
            + parts.get("files table and other", 0)
            + parts.get("file-name FTS5", 0)
        )
        * file_share
        + sum(v for k, v in files.items() if k.startswith("text."))
    )
    return {
        "total_bytes": total,
        "catalog_bytes": total_db,
        "freelist_bytes": free,
        "parts": parts,
        "faiss": files,
        "bytes_per_segment": total / max(1, segs),
        "bytes_per_text_segment": text_part / max(1, n_text),
        "mean_chunk_chars": text_bytes / max(1, n_text),
    }


# ---- one size ------------------------------------------------------------------------------


def cache_specs(index_dir: Path) -> dict[str, Any]:
    """The index type each FAISS cache holds now (an index run may have rebuilt it)."""
    from searchengine.store.store import Store

    store = Store(index_dir, readonly=True)
    try:
        return {
            f"{space}.{level}": (
                None if (vc := store.cache(space, level)).index is None else vc.index.spec.to_dict()
            )
            for space in ("text", "clip")
            for level in ("segment", "file")
        }
    finally:
        store.close()


def code_state() -> dict[str, Any]:
    """The commit measured, and which files under searchengine/ differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": git("status", "--short", "searchengine").splitlines(),
    }


def measure(size: int, folder: Path, out: Path, base: Base, info: dict) -> dict:
    index_dir = folder / "index"
    se = searchengine_bin()
    res: dict[str, Any] = {"size": size, "build": info, "code": code_state()}
    # the current code's query exports and calibration (a no-op when they are up to date)
    refresh = run_cli([se, "index", str(folder / "seed"), "--index", str(index_dir), "--json"])
    res["pre_measure_index_run"] = refresh.wall
    res["caches"] = cache_specs(index_dir)
    res["load_before"] = os.getloadavg()
    print(f"  {size}: disk", flush=True)
    res["disk"] = disk_usage(index_dir, info)

    print(f"  {size}: cold CLI search", flush=True)
    cold = base.queries[N_QUERIES + N_WARMUP :]
    search = [se, "search", "", "--index", str(index_dir), "--json", "-k", "10"]
    run_cli(search[:2] + [cold[-1]] + search[3:])  # warm-up: files into the page cache
    runs = [run_cli(search[:2] + [q] + search[3:]) for q in cold[:N_COLD]]
    probe = (
        "import atexit, sys\n"
        "def report():\n"
        "    mods = sys.modules\n"
        "    sys.stderr.write('\\nMODULES ' + ' '.join(str(int(m in mods)) for m in "
        "('torch', 'onnxruntime', 'faiss', 'open_clip', 'transformers')) + '\\n')\n"
        "atexit.register(report)\n"
        "sys.argv = ['searchengine'] + sys.argv[1:]\n"
        "from searchengine.cli import app\n"
        "app()\n"
    )
    probed = run_cli([sys.executable, "-c", probe] + search[1:2] + [cold[0]] + search[3:])
    flags = probed.stderr.strip().splitlines()[-1].split()[1:]
    res["cold"] = {
        "median": statistics.median(r.wall for r in runs),
        "runs": [r.wall for r in runs],
        "cpu_median": statistics.median(r.cpu for r in runs),
        "peak_rss_max": max(r.rss for r in runs),
        "peak_rss_median": statistics.median(r.rss for r in runs),
        "hits": [len(json.loads(r.stdout)) for r in runs],
        "imported": dict(
            zip(
                ("torch", "onnxruntime", "faiss", "open_clip", "transformers"),
                [f == "1" for f in flags],
                strict=True,
            )
        ),
    }

    print(f"  {size}: open time", flush=True)
    opens = [child("open", folder, out, len(base.vectors)) for _ in range(3)]
    res["open"] = {
        "median": statistics.median(o["open"] for o in opens),
        "caches_median": statistics.median(o["caches"] for o in opens),
        "import_median": statistics.median(o["import"] for o in opens),
        "cpu_median": statistics.median(o["cpu"] for o in opens),
    }

    print(f"  {size}: warm queries", flush=True)
    res["warm"] = child("warm", folder, out, len(base.vectors))

    print(f"  {size}: recall", flush=True)
    res["recall"] = child("recall", folder, out, len(base.vectors))

    print(f"  {size}: no-change re-index", flush=True)
    docs = folder / "files" / "docs"
    py = [sys.executable, "-c", "pass"]
    help_cmd = [se, "--help"]
    reindex = [se, "index", str(docs), "--index", str(index_dir), "--json"]
    rows: dict[str, list[Run]] = {"python": [], "help": [], "reindex": []}
    for _ in range(3):
        rows["python"].append(run_cli(py))
        rows["help"].append(run_cli(help_cmd))
        rows["reindex"].append(run_cli(reindex))
    last = json.loads(rows["reindex"][-1].stdout)
    res["reindex"] = {
        "files": info["text_files"],
        "median": statistics.median(r.wall for r in rows["reindex"]),
        "runs": [r.wall for r in rows["reindex"]],
        "cpu_median": statistics.median(r.cpu for r in rows["reindex"]),
        "python_pass": statistics.median(r.wall for r in rows["python"]),
        "help": statistics.median(r.wall for r in rows["help"]),
        "help_cpu": statistics.median(r.cpu for r in rows["help"]),
        "peak_rss": max(r.rss for r in rows["reindex"]),
        "summary": {
            k: last[k]
            for k in (
                "added",
                "changed",
                "moved",
                "deleted",
                "unchanged",
                "failed",
                "pending",
                "seconds",
            )
        },
    }
    res["load_after"] = os.getloadavg()
    (out / f"results-{size}.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    return res


# ---- report --------------------------------------------------------------------------------


def human(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


def mib(n: float) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def ms(s: float) -> str:
    return f"{s * 1000:.1f}"


def describe_cache(spec: dict | None) -> str:
    if spec is None:
        return "none"
    if spec["kind"] not in ("ivf", "ivf-ondisk"):
        return spec["kind"]
    codes = f"PQ{spec['pq_m']}" if spec.get("pq_m") else f"SQ{spec.get('sq') or 8}"
    where = " on disk" if spec["kind"] == "ivf-ondisk" else ""
    return f"IVF{spec['nlist']},{codes}{where} nprobe {spec['nprobe']}"


def report(out: Path, command: str) -> str:
    results = sorted(
        (json.loads(p.read_text(encoding="utf-8")) for p in out.glob("results-*.json")),
        key=lambda r: r["size"],
    )

    def warm(w: dict, mode: str) -> str:
        m = w[mode]
        n = f", {m['queries']} queries" if m.get("queries", N_QUERIES) < N_QUERIES else ""
        cpu = f" ({ms(m['cpu_p50'])})" if "cpu_p50" in m else ""
        return f"{ms(m['p50'])} / {ms(m['p95'])}{cpu}{n}"

    lines = [
        f"    {command}",
        "",
        "Wall-clock figures, with the process's CPU time in parentheses (see the load column).",
        "",
        "| segments | cold CLI search, s | warm p50 / p95 (CPU p50), ms: unfiltered "
        "| `--type text` | `--path` (2% of text files) | recall@10 text / clip | open, s "
        "| peak RSS: CLI query / warm process | disk bytes per segment / per text segment "
        "| no-change re-index from a shell, s | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        "| target | <= 1.0 at 100k, <= 2.0 at 1M | <= 30 / 80 at 1M | same | same "
        "| >= 0.95 | | <= 1 GiB at 1M | - / <= 2,048 | <= 5 for 100k files | |",
    ]
    for r in results:
        w, rec, d, ri = r["warm"], r["recall"], r["disk"], r["reindex"]
        lines.append(
            f"| {human(r['size'])} | {r['cold']['median']:.2f} ({r['cold']['cpu_median']:.2f}) "
            f"| {warm(w, 'unfiltered')} | {warm(w, 'type')} | {warm(w, 'path')} "
            f"| {rec['text_unfiltered']['recall']:.3f} ({rec['text_unfiltered']['index']}) / "
            f"{rec['clip_unfiltered']['recall']:.3f} ({rec['clip_unfiltered']['index']}) "
            f"| {r['open']['median']:.2f} "
            f"| {mib(r['cold']['peak_rss_max'])} / {mib(w['peak_rss'])} "
            f"| {d['bytes_per_segment']:,.0f} / {d['bytes_per_text_segment']:,.0f} "
            f"| {ri['median']:.2f} ({ri['cpu_median']:.2f}) for {ri['files']:,} files "
            f"| {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |"
        )
    lines += [
        "",
        "Baselines and breakdowns, same runs:",
        "",
        "| segments | query embedding alone p50 (CPU), ms: text / clip "
        "| retrieval + ranking only (query vectors given), p50 / p95 (CPU p50), ms: "
        "unfiltered | `--type text` | `--path` | `--path` recall@10 (text) "
        "| `python -c pass` / `searchengine --help`, s | re-index summary |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ri, w = r["reindex"], r["warm"]
        s = ri["summary"]
        embed = " / ".join(
            f"{ms(w[f'embed_{sp}']['p50'])}"
            + (f" ({ms(w[f'embed_{sp}']['cpu_p50'])})" if "cpu_p50" in w[f"embed_{sp}"] else "")
            for sp in ("text", "clip")
        )
        retrieval = "".join(
            f"| {ms(w[m]['retrieval_p50'])} / {ms(w[m]['retrieval_p95'])}"
            + (f" ({ms(w[m]['retrieval_cpu_p50'])})" if "retrieval_cpu_p50" in w[m] else "")
            + " "
            for m in ("unfiltered", "type", "path")
        )
        lines.append(
            f"| {human(r['size'])} | {embed} {retrieval}"
            f"| {r['recall']['text_path']['recall']:.3f} "
            f"| {ri['python_pass']:.2f} / {ri['help']:.2f} "
            f"| {s['unchanged']:,} unchanged, "
            f"{s['added'] + s['changed'] + s['moved'] + s['deleted']} other |"
        )
    lines += [
        "",
        "Builds:",
        "",
        "| segments | text / clip segments | text / image files | mean cos to base "
        "text / clip | files on disk (s) | catalog writes (s) | FAISS sync (s) "
        "| export + calibration run (s) | segment caches text / clip "
        "| disk: catalog / FAISS (MiB), FTS5 share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b, d = r["build"], r["disk"]
        caches = [r.get("caches", b["caches"])[f"{s}.segment"] for s in ("text", "clip")]
        kinds = " / ".join(describe_cache(c) for c in caches)
        fts = d["parts"].get("segment FTS5", 0) / d["total_bytes"]
        lines.append(
            f"| {human(r['size'])} | {b['text_segments']:,} / {b['clip_segments']:,} "
            f"| {b['text_files']:,} / {b['image_files']:,} "
            f"| {b['mean_cos_to_base_text']:.3f} / {b['mean_cos_to_base_clip']:.3f} "
            f"| {b['seconds_files_on_disk']:.0f} | {b['seconds_catalog']:.0f} "
            f"| {b['seconds_sync']:.0f} | {b['seconds_export_run']:.0f} | {kinds} "
            f"| {d['catalog_bytes'] / (1 << 20):,.0f} / {sum(d['faiss'].values()) / (1 << 20):,.0f}"
            f", {fts:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--out", type=Path, default=Path("indexes/bench-scale"))
    ap.add_argument("--reuse", action="store_true", help="keep indexes built by earlier runs")
    ap.add_argument("--base-chunks", type=int, default=4000)
    ap.add_argument("--sigma", type=float, default=0.5, help="noise norm (relative to 1)")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = args.out.resolve()
    command = "python scripts/bench_scale.py " + " ".join(a for a in sys.argv[1:])
    if args.child:
        base = load_base(out, load_corpus(out), args.base_chunks)
        result = {
            "open": lambda: child_open(args.folder),
            "warm": lambda: child_warm(args.folder, base),
            "recall": lambda: child_recall(args.folder, base),
        }[args.child]()
        print(json.dumps(result))
        return
    if not args.report_only:
        corpus = load_corpus(out)
        print(
            f"corpus: {len(corpus['docs'])} pages, "
            f"{sum(len(d['chunks']) for d in corpus['docs']):,} chunks",
            flush=True,
        )
        base = load_base(out, corpus, args.base_chunks)
        print(
            f"base: {len(base.vectors)} embedded chunks ({base.seconds:.0f} s), "
            f"{len(base.queries)} queries",
            flush=True,
        )
        for size in [int(s) for s in args.sizes.split(",") if s]:
            folder = out / f"n{size}"
            marker = folder / "built.json"
            info = json.loads(marker.read_text()) if marker.exists() else None
            if not (args.reuse and info and info.get("sigma") == args.sigma):
                print(f"building {size}", flush=True)
                info = build(size, folder, base, corpus, args.sigma)
                print(
                    json.dumps({k: v for k, v in info.items() if k.startswith("seconds")}),
                    flush=True,
                )
            if not args.build_only:
                print(f"measuring {size}", flush=True)
                measure(size, folder, out, base, info)
    text = report(out, command)
    (out / "scale.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
