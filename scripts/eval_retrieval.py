"""Measure retrieval quality (recall@k, MRR@10) on labelled sets built from real sample media.

    python scripts/eval_retrieval.py
        [--sets docs-titles,manpages-whatis,images-labels,sounds-labels,manpages-seealso]
        [--index-root indexes/eval] [--queries 150] [--corpus 400] [--seed 0]
        [--clip-config CONFIG_OR_NAME --clip-pretrained CHECKPOINT_OR_TAG] [--clap DIR] [--fresh]
        [--fusion] [--engine-only]

Labelled sets (each a list of (query, set of relevant files)), built from the media that
scripts/fetch_samples.py takes out of Debian packages (fetched here when missing):

- `docs-titles`: HTML pages of samples/bigdocs (python3-doc, postgresql-doc). The query is
  the page's <title> without the product suffix and section numbers ("Sorting HOW TO",
  "Pattern Matching"); the relevant files are the indexed pages with that title (a few
  titles, such as "PREPARE", name two pages). A seeded sample of `--corpus` pages is
  indexed and `--queries` distinct titles among them are asked, so every query has an
  answer and the other pages are distractors. Titles are part of the pages, as they are
  for a user who remembers one, so this set favours keywords.
- `manpages-whatis` (scripts/eval_whatis.py): the description of a man page's NAME line
  ("copy files and directories") asks for that page, indexed without its NAME section
  under a neutral name: queries written for a page but not as its title or name, which
  favour meaning. Rows for all queries and for those sharing at most half their words
  with the target. Descriptions written by the pages' authors, not by us, so the set is
  not tuned to the model.
- `images-labels`: the qabcs-data clip-art (328 PNGs named after what they show, "cat.png").
  The query is "a picture of a {label}"; relevant = the images with that label.
- `sounds-labels`: the qabcs-data noises (241 OGGs, "bear.ogg"): "the sound of a {label}".
  Speech-to-text is off for this set, so it measures CLAP alone.
- `manpages-seealso`: `similar` against its own text model on relatedness judged by people
  (the SEE ALSO sections of Debian's manpages and manpages-dev), NDCG@5 and R@10; see
  scripts/eval_similar.py, which builds and runs it. `manpages-seealso-cut`: the same pages
  and queries with the SEE ALSO sections cut from the indexed text.

Image and sound files are indexed under neutral names (0001.png, ...), in shuffled order,
so neither the file-name BM25 nor the tie-break by path can see the label. Documents keep
their real paths. Without `--clip-config` (or `--clap`) the image (sound) set is skipped
with a printed line: CLIP and CLAP relevance needs real weights. The tiny random models of
tests/.models (scripts/make_test_models.py) may be passed to prove the plumbing; their
rows are marked as such and measure nothing.

Modes, all measured in the same run on the same index (the docs set has all of them; the
image and sound sets have `fused` and `random`):

Each mode is a `searchengine.search.RankParams` value set on the engine (`Engine.params`)
for the time of its queries:

- `fused`: the engine as shipped (`Engine.search`, k=10, restricted to the set's type):
  the default RankParams (vector weight, BM25 per passage, the index's fitted cosine range
  from calibration.json, the file-name bonus), MMR diversity.
- `fused, no MMR`: the same with `diverse=False`.
- `fused, no MMR, family range`: also ignores the index's fitted range and maps cosines
  with the fixed `COSINE_RANGE` of the model family (`calibration="family"`).
- `bm25 only`: `vector_weight=0.0`, so a passage scores by BM25 alone, plus the
  file-name/title BM25 bonus; no MMR. Hits whose score is 0 were found only by the vector
  route and are dropped.
- `vector only`: `vector_weight=1.0`, `name_bonus=0.0`, `calibration="raw"`: (cosine + 1)
  / 2, so the order is the raw cosine order; no MMR.
- `random`: a seeded random order of the indexed files: the chance level.

`--fusion` replaces the docs-titles and manpages-whatis modes by FUSION_MODES: BM25 only,
vector only, the weighted sums for vector weights 0.3-0.9 and reciprocal rank fusion (MMR
on, as shipped), to choose the shipped fusion on both sets together. Every run writes each
mode's pages (score and relevance of each hit) to <index-root>/<set>/pages.json, which
scripts/eval_cutoff.py reads to choose and check the adaptive cutoff.

Metrics per query over the top 10 files: recall@k = |relevant in top k| / |relevant|,
reciprocal rank = 1 / rank of the first relevant file (0 when none is in the top 10),
NDCG@10 with gain 1 for each relevant file; the table shows their means. Prints a
Markdown block (table, corpus notes, timings, the exact command) for docs/benchmarks.md.
Exits 2 with one line on stderr when a sample set cannot be fetched or a given model
cannot be loaded.
"""

import argparse
import html
import json
import os
import random
import re
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import eval_similar  # noqa: E402  (sibling scripts)
import eval_whatis  # noqa: E402
from evalkit import (  # noqa: E402
    SAMPLES,
    EvalError,
    code_version,
    ensure_samples,
    index_corpus,
    ndcg_at,
    recall_at,
    stage,
)

if TYPE_CHECKING:
    from searchengine import Engine
    from searchengine.search import RankParams

SETS = (
    "docs-titles",
    eval_whatis.SET_NAME,
    "images-labels",
    "sounds-labels",
    eval_similar.SET_NAME,
    eval_similar.CUT_SET_NAME,
)
KS = (1, 5, 10)
MRR_K = 10
TEST_MODELS = REPO / "tests" / ".models"


# ---- metrics (pure; recall_at and the shared helpers are in evalkit.py) ---------------------


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str], k: int = MRR_K) -> float:
    """1 / (1-based rank of the first relevant item within the first k), else 0."""
    if not relevant:
        raise ValueError("a query needs at least one relevant item")
    wanted = set(relevant)
    for rank, item in enumerate(ranked[:k], start=1):
        if item in wanted:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True)
class Summary:
    """Mean metrics over the queries of one set and mode."""

    queries: int
    recall: dict[int, float]
    mrr: float
    ndcg: float = 0.0


def summarise(
    runs: Sequence[tuple[Sequence[str], Collection[str]]],
    ks: Sequence[int] = KS,
    mrr_k: int = MRR_K,
) -> Summary:
    """Means of recall@k (for each k) and of the reciprocal rank over (ranked, relevant)."""
    if not runs:
        raise ValueError("no queries to summarise")
    n = len(runs)
    recall = {k: sum(recall_at(r, rel, k) for r, rel in runs) / n for k in ks}
    mrr = sum(reciprocal_rank(r, rel, mrr_k) for r, rel in runs) / n
    ndcg = sum(ndcg_at(r, dict.fromkeys(rel, 1.0), mrr_k) for r, rel in runs) / n
    return Summary(queries=n, recall=recall, mrr=mrr, ndcg=ndcg)


# ---- labelled sets -------------------------------------------------------------------------


@dataclass
class LabelledSet:
    """Files to index (key -> source file) and queries (text, keys of the relevant files)."""

    name: str
    file_type: str
    files: dict[str, Path]
    queries: list[tuple[str, frozenset[str]]]
    notes: list[str] = field(default_factory=list)
    slices: dict[str, frozenset[str]] = field(default_factory=dict)
    """Named subsets of the queries (by text), each also summarised on its own."""


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.S | re.I)
_PRODUCT_SUFFIX = re.compile(
    r"\s*[\u2014\u2013|-]\s*(?:Python|PostgreSQL)\s+[\d.x]+\s+[Dd]ocumentation\s*$"
)
_PRODUCT_ONLY = re.compile(r"^(?:(?:Python|PostgreSQL)\s+)?[\d.x]+\s+Documentation$", re.I)
_INVISIBLE = re.compile("[\u00ad\u200b-\u200d\u2060\ufeff]")
_PRODUCT_PREFIX = re.compile(r"^PostgreSQL:\s*Documentation:\s*[\d.x]+:\s*", re.I)
_SECTION = re.compile(
    r"^(?:(?:Chapter|Appendix|Part)\s+[A-Z0-9]+(?:\.\d+)*\.?"  # Chapter 48. / Appendix J.
    r"|\d+(?:\.\d+)*\."  # 1. / 7.5.
    r"|[A-Z](?:\.\d+)+\."  # J.5.
    r"|[IVX]+\.)\s+"  # II.
)


def clean_title(raw: str | None) -> str:
    """A page title as a query: entities decoded, product name and section numbers gone.

    "9.7. Pattern Matching" -> "Pattern Matching", "Sorting HOW TO — Python 3.11.2
    documentation" -> "Sorting HOW TO"; "" when nothing worth asking remains.
    """
    if not raw:
        return ""
    title = re.sub(r"<[^>]+>", " ", raw)
    title = _INVISIBLE.sub("", html.unescape(title))
    title = re.sub(r"\s+", " ", title).strip()
    title = _PRODUCT_PREFIX.sub("", _PRODUCT_SUFFIX.sub("", title)).strip()
    if _PRODUCT_ONLY.match(title) or title.lower() in ("<no title>", "untitled"):
        return ""
    title = _SECTION.sub("", title, count=1).strip()
    return title if len(re.findall(r"[^\W\d_]", title)) >= 3 else ""


def read_title(path: Path) -> str | None:
    """The <title> of an HTML file (from its first 64 KiB), or None."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    m = _TITLE.search(head)
    return m.group(1).decode("utf-8", errors="replace") if m else None


def build_docs_titles(
    roots: Sequence[Path], n_queries: int, n_corpus: int, seed: int
) -> LabelledSet:
    """Seeded sample of `n_corpus` pages under `roots`, and `n_queries` distinct titles."""
    pages: dict[str, Path] = {}
    for root in roots:
        for p in sorted(root.rglob("*.htm*")):
            if p.is_file():
                pages[f"{root.name}/{p.relative_to(root).as_posix()}"] = p
    if not pages:
        raise EvalError(f"no HTML pages under {', '.join(map(str, roots))}")
    rng = random.Random(seed)
    keys = sorted(rng.sample(sorted(pages), min(n_corpus, len(pages))))
    by_title: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for key in keys:
        title = clean_title(read_title(pages[key]))
        if title:
            by_title.setdefault(title.casefold(), []).append(key)
            texts.setdefault(title.casefold(), title)
    asked = rng.sample(sorted(by_title), min(n_queries, len(by_title)))
    queries = [(texts[t], frozenset(by_title[t])) for t in sorted(asked)]
    per_root = {r.name: sum(k.startswith(r.name + "/") for k in keys) for r in roots}
    multi = sum(len(rel) > 1 for _, rel in queries)
    notes = [
        f"{len(keys)} of {len(pages)} HTML pages indexed ("
        + ", ".join(f"{n} from {name}" for name, n in per_root.items())
        + f"); {len(queries)} distinct titles asked ({multi} shared by two or more pages)"
    ]
    return LabelledSet("docs-titles", "text", {k: pages[k] for k in keys}, queries, notes)


def label_of(path: Path) -> str:
    """What a qabcs file shows, from its name: "blister_beetle.png" -> "blister beetle"."""
    return re.sub(r"[\s_-]+", " ", path.stem).strip().lower()


def phrase(template: str, label: str) -> str:
    """`template` with "{a}" as the article the label takes ("a", "an", or none: a plural)."""
    last = label.split()[-1] if label else ""
    plural = last.endswith("s") and not last.endswith(("ss", "us", "is"))
    article = "" if plural else ("an" if label[:1] in "aeiou" else "a")
    return re.sub(r"\s+", " ", template.format(a=article, label=label)).strip()


def build_label_set(
    name: str,
    file_type: str,
    files: Sequence[Path],
    template: str,
    n_queries: int,
    seed: int,
) -> LabelledSet:
    """Files under neutral, shuffled names; one query per label (a seeded sample of them)."""
    rng = random.Random(seed)
    shuffled = sorted(files)
    rng.shuffle(shuffled)
    width = max(4, len(str(len(shuffled))))
    staged = {f"{i:0{width}d}{p.suffix.lower()}": p for i, p in enumerate(shuffled, 1)}
    by_label: dict[str, set[str]] = {}
    for key, p in staged.items():
        by_label.setdefault(label_of(p), set()).add(key)
    asked = sorted(rng.sample(sorted(by_label), min(n_queries, len(by_label))))
    queries = [(phrase(template, lab), frozenset(by_label[lab])) for lab in asked]
    notes = [
        f"{len(staged)} files indexed under neutral names, {len(by_label)} labels, "
        f"{len(queries)} asked"
    ]
    return LabelledSet(name, file_type, staged, queries, notes)


# ---- running -------------------------------------------------------------------------------


@dataclass
class Row:
    set: str
    mode: str
    summary: Summary
    ms_per_query: float


@dataclass
class SetReport:
    rows: list[Row]
    notes: list[str]
    tables: list[str] = field(default_factory=list)  # sets with their own metrics


@dataclass(frozen=True)
class Mode:
    """One way of ranking: the shipped RankParams with a few values changed (rank_params).

    `cosine`: "engine" (the index's fitted range, else the model family's, as shipped),
    "family" (the fixed COSINE_RANGE, ignoring the index's fit) or "raw" ((cosine + 1) / 2:
    the plain cosine order)."""

    name: str
    vector_weight: float | None = None
    name_bonus: float | None = None
    cosine: str = "engine"
    diverse: bool = True
    drop_zero: bool = False
    fusion: str | None = None  # RankParams.fusion: "weighted" or "rrf"
    rrf_k: float | None = None


CALIBRATION = {"engine": "fitted", "family": "family", "raw": "raw"}  # Mode.cosine -> RankParams
FUSED = Mode("fused")
DOC_MODES = (
    FUSED,
    Mode("fused, no MMR", diverse=False),
    Mode("fused, no MMR, family range", cosine="family", diverse=False),
    Mode("bm25 only", vector_weight=0.0, diverse=False, drop_zero=True),
    Mode("vector only", vector_weight=1.0, name_bonus=0.0, cosine="raw", diverse=False),
)
FUSION_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FUSION_MODES = (
    Mode("bm25 only", vector_weight=0.0, diverse=False, drop_zero=True),
    Mode("vector only", vector_weight=1.0, name_bonus=0.0, cosine="raw", diverse=False),
    *(Mode(f"weighted {w:g}", vector_weight=w, fusion="weighted") for w in FUSION_WEIGHTS),
    *(Mode(f"rrf k={k:g}", fusion="rrf", rrf_k=k) for k in (10.0, 60.0)),
)
"""`--fusion`: the single routes and the candidate fusions (MMR on, as shipped), to choose
the shipped fusion on docs-titles and manpages-whatis together."""


def rank_params(mode: Mode, base: "RankParams | None" = None) -> "RankParams":
    """The engine's ranking parameters for `mode`: `base` (the shipped defaults when None)
    with the mode's changes."""
    from searchengine.search import RankParams

    changes: dict[str, object] = {"calibration": CALIBRATION[mode.cosine]}
    if mode.vector_weight is not None:
        changes["vector_weight"] = mode.vector_weight
    if mode.name_bonus is not None:
        changes["name_bonus"] = mode.name_bonus
    if mode.fusion is not None:
        changes["fusion"] = mode.fusion
    if mode.rrf_k is not None:
        changes["rrf_k"] = mode.rrf_k
    return replace(base or RankParams(), **changes)


@contextmanager
def ranking(eng: "Engine", mode: Mode) -> Iterator[None]:
    """Rank with `mode`'s parameters on this engine for a while (restored on exit)."""
    saved = eng.params
    eng.params = rank_params(mode, saved)
    try:
        yield
    finally:
        eng.params = saved


def evaluate(
    labelled: LabelledSet,
    index_root: Path,
    modes: Sequence[Mode] = (FUSED,),
    models: dict[str, str] | None = None,
    clip_pretrained: str | None = None,
    seed: int = 0,
    fresh: bool = False,
    mode_suffix: str = "",
) -> SetReport:
    """Stage and index the set's files, ask every query in every mode, and summarise. The
    pages (each hit's key, score and relevance, per mode and query) are written to
    <index_root>/<set>/pages.json for scripts/eval_cutoff.py."""
    from searchengine import Engine

    base = index_root / labelled.name
    index_dir = base / "index"
    if fresh and index_dir.exists():
        shutil.rmtree(index_dir)
    keys = stage(labelled.files, base / "corpus")
    notes = list(labelled.notes)
    with Engine(index_dir, create=True, models=models, clip_pretrained=clip_pretrained) as eng:
        notes.append(index_corpus(eng, base / "corpus", labelled.name, labelled.file_type))
        eng.search(labelled.queries[0][0], k=MRR_K, types=[labelled.file_type])  # warm up
        rows = []
        pages: dict[str, list[dict[str, object]]] = {}
        for mode in modes:
            runs, took = [], []
            with ranking(eng, mode):
                for query, relevant in labelled.queries:
                    t0 = time.perf_counter()
                    hits = eng.search(  # literal: ranking of the words, no dates read
                        query,
                        k=MRR_K,
                        types=[labelled.file_type],
                        diverse=mode.diverse,
                        literal=True,
                    )
                    took.append(time.perf_counter() - t0)
                    shown = [h for h in hits if not (mode.drop_zero and h.score <= 0)]
                    ranked = [keys.get(os.path.realpath(h.path), h.path) for h in shown]
                    runs.append((ranked, relevant))
                    pages.setdefault(mode.name, []).append(
                        {
                            "query": query,
                            "scores": [round(h.score, 6) for h in shown],
                            "gains": [1.0 if key in relevant else 0.0 for key in ranked],
                            "relevant": len(relevant),
                        }
                    )
            ms = 1000 * statistics.median(took)
            rows.append(Row(labelled.name, mode.name + mode_suffix, summarise(runs), ms))
            for slice_name, asked in labelled.slices.items():
                part = [
                    run for run, (q, _) in zip(runs, labelled.queries, strict=True) if q in asked
                ]
                if part:
                    name = f"{labelled.name} ({slice_name})"
                    rows.append(Row(name, mode.name + mode_suffix, summarise(part), ms))
        (base / "pages.json").write_text(json.dumps(pages), "utf-8")
    rng = random.Random(seed)
    pool = sorted(labelled.files)
    chance = []
    for _, relevant in labelled.queries:
        chance.append((rng.sample(pool, min(MRR_K, len(pool))), relevant))
    rows.append(Row(labelled.name, "random (chance)", summarise(chance), 0.0))
    return SetReport(rows, notes)


def evaluate_docs(
    roots: Sequence[Path],
    index_root: Path,
    n_queries: int = 150,
    n_corpus: int = 400,
    seed: int = 0,
    fresh: bool = False,
    modes: Sequence[Mode] = DOC_MODES,
) -> SetReport:
    """The docs-titles set over HTML pages under `roots`, in all modes."""
    labelled = build_docs_titles(roots, n_queries, n_corpus, seed)
    if not labelled.queries:
        raise EvalError("docs-titles: no page with a usable <title>")
    return evaluate(labelled, index_root, modes, seed=seed, fresh=fresh)


def evaluate_whatis(
    folder: Path,
    index_root: Path,
    n_queries: int,
    n_corpus: int,
    seed: int = 0,
    fresh: bool = False,
    modes: Sequence[Mode] = DOC_MODES,
) -> SetReport:
    """The manpages-whatis set (scripts/eval_whatis.py) over the man pages under `folder`,
    with a row per mode for all queries and for those sharing few words with the target."""
    built = eval_whatis.build_whatis_set(eval_whatis.read_pages(folder), n_corpus, n_queries, seed)
    if not built.queries:
        raise EvalError(f"{built.name}: no man page with a NAME line under {folder}")
    files = eval_whatis.write_pages(built.texts, index_root / built.name / "pages")
    low = f"overlap <= {eval_whatis.LOW_OVERLAP:g}"
    labelled = LabelledSet(
        built.name,
        "text",
        files,
        built.queries,
        built.notes,
        slices={low: frozenset(q for q, _ in built.low_overlap())},
    )
    return evaluate(labelled, index_root, modes, seed=seed, fresh=fresh)


def is_test_model(path: str | None) -> bool:
    if not path:
        return False
    try:
        return Path(path).resolve().is_relative_to(TEST_MODELS.resolve())
    except OSError:
        return False


# ---- output --------------------------------------------------------------------------------


def markdown_table(rows: Sequence[Row]) -> str:
    out = [
        "| set | mode | queries | R@1 | R@5 | R@10 | MRR@10 | NDCG@10 | ms/query |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r.summary
        ms = f"{r.ms_per_query:.0f}" if r.ms_per_query else "-"
        out.append(
            f"| {r.set} | {r.mode} | {s.queries} | {s.recall[1]:.3f} | {s.recall[5]:.3f} | "
            f"{s.recall[10]:.3f} | {s.mrr:.3f} | {s.ndcg:.3f} | {ms} |"
        )
    return "\n".join(out)


def command_line(argv: Sequence[str]) -> str:
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    return " ".join(shlex.quote(a) for a in ["python", script, *argv])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    ap.add_argument("--index-root", type=Path, default=REPO / "indexes" / "eval")
    ap.add_argument("--samples", type=Path, default=SAMPLES, help="where sample sets live")
    ap.add_argument("--queries", type=int, default=150, help="queries per set (at most)")
    ap.add_argument(
        "--corpus",
        type=int,
        default=400,
        help=f"pages indexed for docs-titles and {eval_similar.SET_NAME}",
    )
    ap.add_argument(
        "--clip-config",
        "--clip",
        dest="clip_config",
        help="open_clip model name or model-config JSON (enables images-labels)",
    )
    ap.add_argument("--clip-pretrained", help="open_clip pretrained tag or checkpoint file")
    ap.add_argument("--clap", help="transformers CLAP id or folder (enables sounds-labels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="rebuild the indexes from scratch")
    ap.add_argument(
        "--engine-only",
        action="store_true",
        help=f"{eval_similar.SET_NAME}: skip the direct-model reference modes",
    )
    ap.add_argument(
        "--fusion",
        action="store_true",
        help="docs-titles and manpages-whatis: the single routes and every candidate fusion "
        "(FUSION_MODES) instead of the usual modes",
    )
    args = ap.parse_args(argv)
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in args.sets if s not in SETS]
    if unknown or not args.sets:
        ap.error(f"unknown set {', '.join(unknown) or '(none)'}: choose from {', '.join(SETS)}")
    if args.queries < 1 or args.corpus < 1:
        ap.error("--queries and --corpus must be at least 1")
    if args.clip_pretrained and not args.clip_config:
        ap.error("--clip-pretrained needs --clip-config")
    return args


def run(args: argparse.Namespace) -> tuple[list[Row], list[str], list[str]]:
    """Evaluate each set of args.sets: (table rows, notes, tables of sets with own metrics)."""
    rows: list[Row] = []
    notes: list[str] = []
    tables: list[str] = []
    for name in args.sets:
        t0 = time.perf_counter()
        print(f"{name}: building ...", file=sys.stderr, flush=True)
        if name == "docs-titles":
            bigdocs = ensure_samples("bigdocs", args.samples)
            roots = [p for p in (bigdocs / "python3-doc", bigdocs / "postgresql-doc") if p.is_dir()]
            report = evaluate_docs(
                roots or [bigdocs],
                args.index_root,
                args.queries,
                args.corpus,
                args.seed,
                args.fresh,
                FUSION_MODES if args.fusion else DOC_MODES,
            )
            report.notes.append("text model: the index default (all-MiniLM-L6-v2)")
        elif name == eval_whatis.SET_NAME:
            report = evaluate_whatis(
                ensure_samples("manpages", args.samples),
                args.index_root,
                args.queries,
                args.corpus,
                args.seed,
                args.fresh,
                FUSION_MODES if args.fusion else DOC_MODES,
            )
            report.notes.append("text model: the index default (all-MiniLM-L6-v2)")
        elif name in (eval_similar.SET_NAME, eval_similar.CUT_SET_NAME):
            folder = ensure_samples("manpages", args.samples)
            pages = eval_similar.build_seealso_set(
                folder, args.corpus, args.queries, args.seed, cut=name == eval_similar.CUT_SET_NAME
            )
            sim = eval_similar.evaluate_similar(
                pages, args.index_root, args.seed, args.fresh, direct=not args.engine_only
            )
            sim.notes.append("text model: the index default (all-MiniLM-L6-v2)")
            report = SetReport([], sim.notes, [eval_similar.markdown_table(sim.rows, sim.name)])
        elif name == "images-labels":
            if not args.clip_config:
                notes.append(
                    "images-labels: skipped: no CLIP weights given (pass --clip-config "
                    "NAME_OR_JSON --clip-pretrained TAG_OR_FILE; tests/.models/tiny-clip.* "
                    "proves the plumbing only)"
                )
                continue
            folder = ensure_samples("images", args.samples) / "qabcs-data"
            files = [p for p in folder.glob("*/*") if p.suffix.lower() in (".png", ".jpg")]
            labelled = build_label_set(
                "images-labels", "image", files, "a picture of {a} {label}", args.queries, args.seed
            )
            test = is_test_model(args.clip_config) or is_test_model(args.clip_pretrained)
            report = evaluate(
                labelled,
                args.index_root,
                (FUSED,),
                models={"clip": args.clip_config},
                clip_pretrained=args.clip_pretrained,
                seed=args.seed,
                fresh=args.fresh,
                mode_suffix=", random test model: plumbing only" if test else "",
            )
            report.notes.append(
                f"clip model: {args.clip_config} / {args.clip_pretrained or 'default tag'}"
                + (
                    " (tiny random test model: proves the plumbing, measures nothing)"
                    if test
                    else ""
                )
            )
        else:
            if not args.clap:
                notes.append(
                    "sounds-labels: skipped: no CLAP weights given (pass --clap ID_OR_DIR; "
                    "tests/.models/tiny-clap proves the plumbing only)"
                )
                continue
            folder = ensure_samples("sounds", args.samples) / "qabcs-data"
            files = [p for p in folder.iterdir() if p.suffix.lower() in (".ogg", ".wav", ".mp3")]
            labelled = build_label_set(
                "sounds-labels", "audio", files, "the sound of {a} {label}", args.queries, args.seed
            )
            test = is_test_model(args.clap)
            report = evaluate(
                labelled,
                args.index_root,
                (FUSED,),
                models={"clap": args.clap, "speech": "off"},
                seed=args.seed,
                fresh=args.fresh,
                mode_suffix=", random test model: plumbing only" if test else "",
            )
            report.notes.append(
                f"clap model: {args.clap}, speech-to-text off"
                + (
                    " (tiny random test model: proves the plumbing, measures nothing)"
                    if test
                    else ""
                )
            )
        rows += report.rows
        tables += report.tables
        notes += [f"{name}: {n}" for n in report.notes]
        notes.append(f"{name}: wall time {time.perf_counter() - t0:.1f} s")
    return rows, notes, tables


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        rows, notes, tables = run(args)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    threads = os.environ.get("SEARCHENGINE_THREADS", "all")
    print(
        f"\n### Retrieval quality ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"torch threads {threads})\n"
    )
    if rows:
        print(markdown_table(rows) + "\n")
    for table in tables:
        print(table + "\n")
    for note in notes:
        print(f"- {note}")
    print(f"- measured: {code_version()}")
    print(f"- total wall time {time.perf_counter() - started:.1f} s")
    print(f"\nCommand: `{command_line(argv)}`\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
