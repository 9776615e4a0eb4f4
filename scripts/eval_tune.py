"""Measure domain tuning (`searchengine tune`) on real labelled sets, with an honest split.

    OMP_NUM_THREADS=1 python scripts/eval_tune.py [--index-root indexes/eval] [--eval 0.2]
        [--seed 0] [--corpus 1100] [--queries 1100]

Pairs: the manpages-whatis set (scripts/eval_whatis.py: a man page's NAME description, such
as "copy files and directories", asks for that page, indexed without its NAME section under
a neutral name). A seeded share (`--eval`) of the *pages* is held out with all their pairs
(searchengine.tune.split_by_file: no page and no query text is seen in both parts); the
adapter is trained on the pairs of the other pages, exactly as `searchengine tune --eval`
does, with the shipped TuneParams.

Measured with `search` as shipped (vectors fused with BM25, literal words, a full page of
10), before (base model) and after (adapter), on:
- held-out whatis pairs: the same kind of query, on pages never trained on;
- docs-titles: 150 page titles over 400 HTML pages of the Python and PostgreSQL docs
  (scripts/eval_retrieval.py), another index of the same text model, never trained on:
  the outside set, where a regression would show.

The indexes are those of scripts/eval_retrieval.py under --index-root (built, or caught
up, here when needed). The adapter is evaluated in memory and never stored in them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_whatis  # noqa: E402
from eval_retrieval import build_docs_titles  # noqa: E402
from evalkit import REPO, ensure_samples, index_corpus, stage  # noqa: E402

from searchengine import Engine  # noqa: E402
from searchengine import tune as tuning  # noqa: E402
from searchengine.adapters import Adapter  # noqa: E402


def open_set(name: str, files: dict[str, Path], root: Path) -> tuple[Engine, dict[str, int]]:
    """The set's index (caught up with its staged corpus) and key -> file id."""
    base = root / name
    keys = stage(files, base / "corpus")
    eng = Engine(base / "index", create=True)
    print(index_corpus(eng, base / "corpus", name, "text"), file=sys.stderr)
    ids: dict[str, int] = {}
    for real, key in keys.items():
        rec = eng.catalog.file_by_key(os.fsencode(real))
        if rec is not None and rec.state == "indexed":
            ids[key] = rec.id
    return eng, ids


def asked(
    queries: Sequence[tuple[str, frozenset[str]]], ids: dict[str, int]
) -> list[tuple[str, frozenset[int]]]:
    out = []
    for query, keys in queries:
        rel = frozenset(ids[k] for k in keys if k in ids)
        if rel:
            out.append((query, rel))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index-root", type=Path, default=REPO / "indexes" / "eval")
    ap.add_argument("--eval", type=float, default=0.2, dest="share")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corpus", type=int, default=1100)
    ap.add_argument("--queries", type=int, default=1100)
    args = ap.parse_args(argv)

    pages = eval_whatis.read_pages(ensure_samples("manpages"))
    built = eval_whatis.build_whatis_set(pages, args.corpus, args.queries, args.seed)
    files = eval_whatis.write_pages(built.texts, args.index_root / built.name / "pages")
    eng, ids = open_set(built.name, files, args.index_root)
    pairs = [
        tuning.Pair(q, key, 0, ids[key]) for q, keys in built.queries for key in keys if key in ids
    ]
    train, held = tuning.split_by_file(pairs, args.share, args.seed)
    params = tuning.TuneParams(seed=args.seed)
    t0 = time.perf_counter()
    q = tuning.query_rows(eng, "text", [p.query for p in train])
    t = tuning.target_rows(eng, "text", train, q)
    matrix, loss0, loss1 = tuning.train(q, t, [p.file_id for p in train], params)
    took = time.perf_counter() - t0
    model = eng.config.model_key("text")
    adapter = Adapter("text", model, None, matrix, {})
    rows = [
        tuning.score(eng, "text", "manpages-whatis, held-out pages", tuning.grouped(held), adapter)
    ]
    low = {qq for qq, _ in built.low_overlap()}
    held_low = [a for a in tuning.grouped(held) if a[0] in low]
    rows.append(tuning.score(eng, "text", "  (overlap <= 0.5)", held_low, adapter))
    eng.close()

    bigdocs = ensure_samples("bigdocs")
    roots = [p for p in (bigdocs / "python3-doc", bigdocs / "postgresql-doc") if p.is_dir()]
    docs = build_docs_titles(roots or [bigdocs], 150, 400, args.seed)
    deng, dids = open_set(docs.name, docs.files, args.index_root)
    if deng.config.model_key("text") != model:
        raise SystemExit("docs-titles uses another text model: the adapter does not apply")
    rows.append(
        tuning.score(deng, "text", "docs-titles (outside)", asked(docs.queries, dids), adapter)
    )
    deng.close()

    print(
        f"trained on {len(train)} pairs ({len({p.file_id for p in train})} pages), "
        f"held out {len(held)} pairs ({len({p.file_id for p in held})} pages); "
        f"{took:.1f} s to embed, pick targets and train (loss {loss0:.3f} -> {loss1:.3f})"
    )
    print()
    print("| set | queries | R@10 before | R@10 after | MRR@10 before | MRR@10 after |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.name.strip()} | {r.queries} | {r.recall_before:.3f} | {r.recall_after:.3f} "
            f"| {r.mrr_before:.3f} | {r.mrr_after:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
