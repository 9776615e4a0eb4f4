"""The `manpages-seealso` set: does `similar` rank files like its own model would?

Run through scripts/eval_retrieval.py (`--sets manpages-seealso`). Relatedness was judged by
people: the authors of the Linux man-pages (Debian's `manpages` and `manpages-dev`, fetched
and turned into plain text by scripts/fetch_samples.py) list related pages in each page's
SEE ALSO section. Two pages are related with gain 2 when each cites the other, gain 1 when
one cites the other. The SEE ALSO section stays in the indexed text, as it would be in a
user's copy of a page; `manpages-seealso-cut` (CUT_SET_NAME) is the same corpus and queries
with that section cut from the text, to show how much of a score comes from reading the
references themselves.

Corpus: a seeded sample of `--corpus` pages. Query pages with at least MIN_RELATED related
pages are drawn in a seeded order and added together with all their related pages while
they fit in RELATED_SHARE of the corpus; seeded random pages fill the rest (distractors,
which may be related to something too: relatedness is computed over the final corpus). The
queries are then every corpus page with at least MIN_RELATED related pages in the corpus
(a seeded sample of `--queries` of them when there are more).

Modes, measured in the same run on the same pages:

- `similar -k K` (K = 10 and 100): `Engine.similar(page, k=K, types=["text"])` as shipped,
  with the query page itself and its exact copies dropped from the ranking.
- `direct model, whole page`: the index's text model (the engine's own loaded encoder) on
  each page's whole text, one `model.encode(text)`; the model truncates what is beyond its
  max_seq_length (256 word pieces for all-MiniLM-L6-v2). Plain cosine ranking of all
  corpus pages.
- `direct model, mean of chunks`: the normalised mean of the model's vectors over the
  engine's own chunks of each page (searchengine.media.decode_file with the index's chunk
  settings), cosine ranking: what one whole-file vector per file can reach.
- `random`: a seeded random order.

Metrics per query: NDCG@5 with the graded gains (linear gains, log2 discount; the ideal DCG
from all related pages of the query present in the corpus) and R@10 (related pages in the
top 10 / related pages present); the table shows their means and each mode's ratio to the
whole-page direct model. The direct vectors are cached next to the index
(direct-<model and chunking hash>.npz, keyed by page content), so a re-run embeds only
what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import man_text  # noqa: E402
from evalkit import EvalError, index_corpus, ndcg_at, recall_at, stage  # noqa: E402

SET_NAME = "manpages-seealso"
CUT_SET_NAME = "manpages-seealso-cut"  # the same, with SEE ALSO cut from the indexed text
SIDECAR = "see_also.json"
GAIN_MUTUAL = 2.0
GAIN_ONE_WAY = 1.0
MIN_RELATED = 3
RELATED_SHARE = 0.75
NDCG_K = 5
RECALL_K = 10
ENGINE_KS = (10, 100)
TARGET_RATIO = 0.95
DIRECT = "direct model, whole page"
DIRECT_BATCH = 32  # pages embedded per call in the direct modes
CHUNK_MEAN = "direct model, mean of chunks"


# ---- relatedness and the labelled set ------------------------------------------------------


def relatedness(cites: Mapping[str, Collection[str]]) -> dict[str, dict[str, float]]:
    """Symmetric graded relatedness between the pages of `cites` (page -> pages it cites):
    GAIN_MUTUAL when both cite each other, GAIN_ONE_WAY when one does. Citations of pages
    outside `cites`, and of a page by itself, are ignored."""
    keys = set(cites)
    out: dict[str, dict[str, float]] = {k: {} for k in sorted(keys)}
    for a in sorted(keys):
        for b in cites[a]:
            if b == a or b not in keys:
                continue
            gain = GAIN_MUTUAL if a in cites[b] else GAIN_ONE_WAY
            out[a][b] = out[b][a] = gain
    return out


def read_see_also(folder: Path) -> dict[str, dict[str, object]]:
    """The pages of folder/see_also.json (written by scripts/fetch_samples.py manpages)."""
    path = folder / SIDECAR
    try:
        pages = json.loads(path.read_text(encoding="utf-8"))["pages"]
    except (OSError, ValueError, KeyError) as exc:
        raise EvalError(
            f"{SET_NAME}: cannot read {path} ({exc}); refetch with "
            "python scripts/fetch_samples.py manpages --force"
        ) from None
    missing = [k for k, p in pages.items() if not (folder / str(p["path"])).is_file()]
    if missing:
        raise EvalError(
            f"{SET_NAME}: {len(missing)} pages of {SIDECAR} are missing (first: {missing[0]}); "
            "refetch with python scripts/fetch_samples.py manpages --force"
        )
    return pages


@dataclass
class SeeAlsoSet:
    """Corpus pages (key -> source file) and, per query page, its related pages with gains.
    With `cut`, the pages are indexed and embedded without their SEE ALSO section."""

    files: dict[str, Path]
    queries: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)
    cut: bool = False

    @property
    def name(self) -> str:
        return CUT_SET_NAME if self.cut else SET_NAME


def corpus_key(rel_path: str) -> str:
    """ "manpages-dev/man2/open.2.txt" -> "man2/open.2.txt": section folders, no package."""
    parts = Path(rel_path).parts
    return "/".join(parts[-2:])


def build_seealso_set(
    folder: Path, n_corpus: int, n_queries: int, seed: int, cut: bool = False
) -> SeeAlsoSet:
    """Seeded corpus and queries over the man pages under `folder` (see the module doc); the
    same for the same arguments, whether `cut` or not."""
    pages = read_see_also(folder)
    cites = {k: [str(r) for r in p["see_also"]] for k, p in pages.items()}  # type: ignore[union-attr]
    graph = relatedness(cites)
    rng = random.Random(seed)
    seeds = sorted(k for k, rel in graph.items() if len(rel) >= MIN_RELATED)
    rng.shuffle(seeds)
    n_corpus = min(n_corpus, len(pages))
    budget = max(1, int(n_corpus * RELATED_SHARE))
    chosen: set[str] = set()
    seeded = 0
    for q in seeds:
        grow = ({q} | set(graph[q])) - chosen
        if len(chosen) + len(grow) <= budget:
            chosen |= grow
            seeded += 1
    rest = sorted(set(pages) - chosen)
    distractors = rng.sample(rest, min(len(rest), n_corpus - len(chosen)))
    corpus = chosen | set(distractors)
    inside = relatedness({k: [r for r in cites[k] if r in corpus] for k in sorted(corpus)})
    candidates = sorted(k for k, rel in inside.items() if len(rel) >= MIN_RELATED)
    asked = sorted(rng.sample(candidates, min(n_queries, len(candidates))))
    files = {corpus_key(str(pages[k]["path"])): folder / str(pages[k]["path"]) for k in corpus}
    if len(files) != len(corpus):
        raise EvalError(f"{SET_NAME}: two pages share a section folder and name")
    by_page = {k: corpus_key(str(pages[k]["path"])) for k in corpus}
    queries = {by_page[q]: {by_page[r]: g for r, g in sorted(inside[q].items())} for q in asked}
    n_rel = [len(r) for r in queries.values()]
    mutual = sum(sum(g == GAIN_MUTUAL for g in r.values()) for r in queries.values())
    notes = [
        f"{len(files)} of {len(pages)} man pages indexed ({len(chosen)} from {seeded} seed "
        f"pages and their SEE ALSO neighbours, {len(distractors)} random others); "
        f"{len(queries)} query pages with at least {MIN_RELATED} related pages in the corpus "
        f"(median {statistics.median(n_rel) if n_rel else 0:g}, max {max(n_rel, default=0)}; "
        f"{mutual} of {sum(n_rel)} query-related pairs cite each other)"
    ]
    if cut:
        notes.append("SEE ALSO sections cut from the indexed and embedded text")
    return SeeAlsoSet(files, queries, notes, cut)


def cut_copies(files: Mapping[str, Path], dest: Path) -> dict[str, Path]:
    """dest/key: each page without its SEE ALSO section (rewritten only when that changes,
    so the staged copies and the index stay as they are on a re-run)."""
    out = {}
    for key, src in files.items():
        text = man_text.cut_see_also(src.read_text(encoding="utf-8", errors="replace"))
        target = dest / key
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        out[key] = target
    return out


# ---- rankings ------------------------------------------------------------------------------


@dataclass
class SimRow:
    mode: str
    queries: int
    ndcg: float
    recall: float
    ms_per_query: float | None


@dataclass
class SimilarReport:
    rows: list[SimRow]
    notes: list[str]
    name: str = SET_NAME


def score(
    mode: str, ranked: Mapping[str, Sequence[str]], queries: Mapping[str, Mapping[str, float]]
) -> tuple[float, float]:
    """Mean NDCG@5 and R@10 of per-query rankings (keys of pages, the query left out)."""
    ndcg = [ndcg_at(ranked[q], rel, NDCG_K) for q, rel in queries.items()]
    recall = [recall_at(ranked[q], list(rel), RECALL_K) for q, rel in queries.items()]
    if not ndcg:
        raise EvalError(f"{SET_NAME}: no query for {mode}")
    return statistics.fmean(ndcg), statistics.fmean(recall)


def exact_copies(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """Per key, the keys whose file has the same bytes (itself included)."""
    by_sha: dict[str, set[str]] = {}
    sha_of = {}
    for key, path in files.items():
        sha_of[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        by_sha.setdefault(sha_of[key], set()).add(key)
    return {key: by_sha[sha_of[key]] for key in files}


def cosine_rankings(
    keys: Sequence[str], matrix: np.ndarray, queries: Collection[str], drop: Mapping[str, set[str]]
) -> tuple[dict[str, list[str]], float]:
    """Per query, the other keys by cosine (rows of `matrix` are unit vectors), best first;
    and the median ms per query."""
    where = {k: i for i, k in enumerate(keys)}
    out, took = {}, []
    for q in queries:
        t0 = time.perf_counter()
        sims = matrix @ matrix[where[q]]
        order = np.argsort(-sims, kind="stable")
        out[q] = [keys[i] for i in order if keys[i] not in drop[q]]
        took.append(time.perf_counter() - t0)
    return out, 1000 * statistics.median(took)


def direct_vectors(
    eng: object, keys: Sequence[str], corpus: Path, cache_dir: Path, label: str = SET_NAME
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Whole-page and mean-of-chunks vectors of the index's text model for each key (rows in
    key order), from a cache keyed by page content where possible; and notes on the work."""
    from searchengine.media import decode_file

    encoder = eng.models.encoder("text")  # type: ignore[attr-defined]
    config = eng.config  # type: ignore[attr-defined]
    model = eng.models.resolve("text")  # type: ignore[attr-defined]
    max_len = getattr(getattr(encoder, "model", None), "max_seq_length", None)
    ident = json.dumps(
        [
            model.location,
            config.model_key("text"),
            max_len,
            config.chunk_chars,
            config.chunk_overlap,
        ]
    )
    cache = cache_dir / f"direct-{hashlib.sha256(ident.encode()).hexdigest()[:12]}.npz"
    known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if cache.is_file():
        with np.load(cache) as data:
            for sha, whole, mean in zip(data["sha"], data["whole"], data["mean"], strict=True):
                known[str(sha)] = (whole, mean)
    shas = [hashlib.sha256((corpus / k).read_bytes()).hexdigest() for k in keys]
    todo = [(k, sha) for k, sha in zip(keys, shas, strict=True) if sha not in known]
    whole_s = chunks_s = 0.0
    n_chunks = 0
    for start in range(0, len(todo), DIRECT_BATCH):
        if start:
            print(f"  {label}: direct model {start}/{len(todo)} pages", file=sys.stderr)
        batch = todo[start : start + DIRECT_BATCH]
        paths = [corpus / key for key, _ in batch]
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
        t0 = time.perf_counter()
        wholes = encoder.embed_items(texts)
        t1 = time.perf_counter()
        chunks = [
            [s.payload for s in decode_file(str(p), config).segments if s.space == "text"]
            for p in paths
        ]
        rows = encoder.embed_items([c for page in chunks for c in page])
        chunks_s += time.perf_counter() - t1
        whole_s += t1 - t0
        at = 0
        for (_, sha), whole, page in zip(batch, wholes, chunks, strict=True):
            mean = rows[at : at + len(page)].mean(axis=0)
            at += len(page)
            mean = mean / (np.linalg.norm(mean) or 1.0)
            known[sha] = (np.asarray(whole, np.float32), np.asarray(mean, np.float32))
        n_chunks += at
    if todo:
        cache_dir.mkdir(parents=True, exist_ok=True)
        order = sorted(known)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(
            tmp,
            sha=np.array(order),
            whole=np.stack([known[s][0] for s in order]),
            mean=np.stack([known[s][1] for s in order]),
        )
        os.replace(tmp, cache)
    notes = [
        f"direct model: {config.model_key('text')} (from the {model.source}, the index's own "
        f"encoder), max_seq_length {max_len} word pieces: the model truncates a whole page "
        "there",
        (
            f"direct vectors: {len(todo)} pages embedded in this run (whole pages {whole_s:.1f} "
            f"s; {n_chunks} chunks {chunks_s:.1f} s), {len(keys) - len(todo)} from the cache"
        ),
    ]
    whole = np.stack([known[s][0] for s in shas]).astype(np.float32)
    mean = np.stack([known[s][1] for s in shas]).astype(np.float32)
    return whole, mean, notes


def evaluate_similar(
    labelled: SeeAlsoSet,
    index_root: Path,
    seed: int = 0,
    fresh: bool = False,
    models: dict[str, str] | None = None,
    direct: bool = True,
) -> SimilarReport:
    """Stage and index the corpus, rank every query page in every mode, and summarise.
    `direct=False` leaves out the direct-model modes (and their embedding time)."""
    from searchengine import Engine

    label = labelled.name
    base = index_root / label
    index_dir = base / "index"
    if fresh:
        shutil.rmtree(index_dir, ignore_errors=True)
        for old in base.glob("direct-*.npz"):
            old.unlink()
    files = cut_copies(labelled.files, base / "cut") if labelled.cut else labelled.files
    keys_of = stage(files, base / "corpus")
    keys = sorted(labelled.files)
    copies = exact_copies({k: base / "corpus" / k for k in keys})
    queries = labelled.queries
    notes = list(labelled.notes)
    dupes = sum(len(c) > 1 for c in copies.values())
    if dupes:
        notes.append(f"{dupes} pages have an exact copy in the corpus: dropped with the query")
    rows: list[SimRow] = []
    pages: dict[str, list[dict[str, object]]] = {}
    with Engine(index_dir, create=True, models=models) as eng:
        notes.append(index_corpus(eng, base / "corpus", label, "text"))
        for k in ENGINE_KS:
            print(f"  {label}: similar -k {k} for {len(queries)} pages", file=sys.stderr)
            ranked, took = {}, []
            for q in queries:
                t0 = time.perf_counter()
                hits = eng.similar(base / "corpus" / q, k=k, types=["text"])
                took.append(time.perf_counter() - t0)
                found = [(keys_of.get(os.path.realpath(h.path), h.path), h) for h in hits]
                ranked[q] = [key for key, _ in found if key not in copies[q]]
                pages.setdefault(f"similar -k {k}", []).append(
                    {  # for scripts/eval_cutoff.py
                        "query": q,
                        "scores": [round(h.score, 6) for key, h in found if key not in copies[q]],
                        "gains": [queries[q].get(key, 0.0) for key in ranked[q]],
                        "relevant": len(queries[q]),
                    }
                )
            ndcg, recall = score(f"similar -k {k}", ranked, queries)
            rows.append(
                SimRow(
                    f"similar -k {k} (engine)",
                    len(queries),
                    ndcg,
                    recall,
                    1000 * statistics.median(took),
                )
            )
        (base / "pages.json").write_text(json.dumps(pages), "utf-8")
        if direct:
            whole, mean, direct_notes = direct_vectors(eng, keys, base / "corpus", base, label)
            notes += direct_notes
    for name, matrix in ((DIRECT, whole), (CHUNK_MEAN, mean)) if direct else ():
        ranked, ms = cosine_rankings(keys, matrix, queries, copies)
        ndcg, recall = score(name, ranked, queries)
        rows.append(SimRow(name, len(queries), ndcg, recall, ms))
    rng = random.Random(seed)
    chance = {}
    for q in queries:
        pool = [k for k in keys if k not in copies[q]]
        chance[q] = rng.sample(pool, min(RECALL_K, len(pool)))
    ndcg, recall = score("random", chance, queries)
    rows.append(SimRow("random (chance)", len(queries), ndcg, recall, None))
    if direct:
        notes.append(target_line(rows))
    return SimilarReport(rows, notes, label)


# ---- output --------------------------------------------------------------------------------


def target_line(rows: Sequence[SimRow]) -> str:
    """Whether each engine mode reaches TARGET_RATIO of the direct model on both metrics, and
    its ratios to the mean of chunks (the stronger reference when pages are long)."""
    by_mode = {r.mode: r for r in rows}
    direct, means = by_mode[DIRECT], by_mode.get(CHUNK_MEAN)
    parts = []
    for r in rows:
        if not r.mode.startswith("similar"):
            continue
        ok = r.ndcg >= TARGET_RATIO * direct.ndcg and r.recall >= TARGET_RATIO * direct.recall
        part = f"{r.mode.split(' (')[0]}: {'met' if ok else 'NOT met'}"
        if means and means.ndcg and means.recall:
            part += (
                f" (to the mean of chunks: NDCG@{NDCG_K} {r.ndcg / means.ndcg:.2f}, "
                f"R@{RECALL_K} {r.recall / means.recall:.2f})"
            )
        parts.append(part)
    return f"target (engine >= {TARGET_RATIO:g} x direct model, whole page, on both): " + (
        "; ".join(parts)
    )


def markdown_table(rows: Sequence[SimRow], name: str = SET_NAME) -> str:
    direct = next((r for r in rows if r.mode == DIRECT), None)

    def ratio(value: float, ref: float | None) -> str:
        return f"{value / ref:.2f}" if ref else "-"

    out = [
        f"| set | mode | queries | NDCG@{NDCG_K} | R@{RECALL_K} | NDCG@{NDCG_K} / direct "
        f"| R@{RECALL_K} / direct | ms/query |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = f"{r.ms_per_query:.1f}" if r.ms_per_query is not None else "-"
        out.append(
            f"| {name} | {r.mode} | {r.queries} | {r.ndcg:.3f} | {r.recall:.3f} | "
            f"{ratio(r.ndcg, direct.ndcg if direct else None)} | "
            f"{ratio(r.recall, direct.recall if direct else None)} | {ms} |"
        )
    return "\n".join(out)
