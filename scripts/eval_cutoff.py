"""Choose and check the adaptive cutoff (searchengine/cutoff.py) on the evaluation sets.

    python scripts/eval_cutoff.py [--index-root indexes/eval]
        [--sets docs-titles,manpages-whatis,manpages-seealso] [--mode fused] [--sweep]

Reads the pages that scripts/eval_retrieval.py wrote (<index-root>/<set>/pages.json: per
mode and query, each hit's shown score and gain, and how many relevant files the corpus
holds; `similar -k 10` pages for manpages-seealso), so no query is run again. For each set,
the fixed page of k = 10 and each rule are compared, the rule applied by the very code the
engine runs (`searchengine.cutoff.kept`) to the page's scores:

- kept: mean hits shown per query;
- precision: relevant hits kept / hits kept (mean over queries);
- recall: relevant hits kept / relevant files in the corpus (mean over queries);
- F1: the per-query harmonic mean of the two, averaged.

`--sweep` tries every candidate (ratio to the best score, drop below the best, widest gap,
knee, each alone and with an absolute floor) and picks the one with the best mean F1 over
the sets among those that lose at most `--max-loss` (MAX_RECALL_LOSS) recall on every set
against the full page; its table adds that rule, the best of each family within the budget,
the best by F1 ignoring the budget, and the shipped search rule. Without it, only the full
page and the shipped RankParams rule are shown. Search sets and `similar` are chosen apart:
their scores are on different scales.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from searchengine.cutoff import Cutoff, kept  # noqa: E402
from searchengine.search import RankParams  # noqa: E402

SEARCH_SETS = ("docs-titles", "manpages-whatis")
SIMILAR_SET = "manpages-seealso"
SIMILAR_MODE = "similar -k 10"
MAX_RECALL_LOSS = 0.01
FULL = Cutoff()


@dataclass(frozen=True)
class Page:
    """One query's page as ranked: shown scores and gains in page order, relevant in all."""

    scores: list[float]
    gains: list[float]
    relevant: int


@dataclass(frozen=True)
class Kept:
    """Means over a set's queries for one rule."""

    kept: float
    precision: float
    recall: float
    f1: float


def measure(pages: Sequence[Page], rule: Cutoff) -> Kept:
    """Mean hits kept, precision, recall and F1 of what `rule` keeps of each page."""
    if not pages:
        raise ValueError("no pages to measure")
    n_kept, prec, rec, f1 = [], [], [], []
    for page in pages:
        mask = kept(page.scores, rule) if page.scores else []
        hits = sum(mask)
        good = sum(1 for m, g in zip(mask, page.gains, strict=True) if m and g > 0)
        p = good / hits if hits else 0.0
        r = good / page.relevant if page.relevant else 0.0
        n_kept.append(hits)
        prec.append(p)
        rec.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    mean = statistics.fmean
    return Kept(mean(n_kept), mean(prec), mean(rec), mean(f1))


def candidates() -> Iterable[Cutoff]:
    """Every rule tried by --sweep."""
    grids = {
        "ratio": [x / 100 for x in range(50, 100, 5)],
        "drop": [x / 1000 for x in range(25, 425, 25)],
        "gap": [x / 100 for x in range(2, 21, 1)],
        "knee": [x / 100 for x in range(10, 65, 5)],
    }
    for floor in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        for rule, values in grids.items():
            for value in values:
                yield Cutoff(rule, value, floor)  # type: ignore[arg-type]
        yield Cutoff("ratio", 0.0, floor)  # the floor alone


def describe(rule: Cutoff) -> str:
    if rule.rule == "off":
        return "fixed k = 10 (the full page)"
    if rule.rule == "ratio" and rule.value == 0.0:
        text = "floor only"
        return f"{text} {rule.floor:g}"
    text = {
        "ratio": f"ratio >= {rule.value:g} x best",
        "drop": f"drop <= {rule.value:g} below best",
        "gap": f"widest gap >= {rule.value:g}",
        "knee": f"knee depth >= {rule.value:g}",
    }[rule.rule]
    return text + (f", floor {rule.floor:g}" if rule.floor else "")


def load_pages(index_root: Path, name: str, mode: str) -> list[Page]:
    path = index_root / name / "pages.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"error: cannot read {path} ({exc}): run scripts/eval_retrieval.py --sets {name}"
        ) from None
    if mode not in data:
        raise SystemExit(f"error: {path} has no mode {mode!r} (has: {', '.join(data)})")
    return [Page(p["scores"], p["gains"], p["relevant"]) for p in data[mode]]


def choose(
    sets: Mapping[str, Sequence[Page]], rules: Iterable[Cutoff], max_loss: float
) -> tuple[Cutoff | None, list[tuple[Cutoff, dict[str, Kept]]]]:
    """The rule of best mean F1 over the sets among those losing at most `max_loss`
    recall on each set against the full page; and every rule's figures."""
    full = {name: measure(pages, FULL) for name, pages in sets.items()}
    results = []
    best: tuple[float, Cutoff] | None = None
    for rule in rules:
        got = {name: measure(pages, rule) for name, pages in sets.items()}
        results.append((rule, got))
        if all(full[n].recall - got[n].recall <= max_loss + 1e-12 for n in sets):
            f1 = statistics.fmean(k.f1 for k in got.values())
            if best is None or f1 > best[0] + 1e-12:
                best = (f1, rule)
    return (best[1] if best else None), results


def table(sets: Mapping[str, Sequence[Page]], rules: Sequence[Cutoff]) -> str:
    out = [
        "| set | queries | rule | hits kept | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, pages in sets.items():
        for rule in rules:
            k = measure(pages, rule)
            out.append(
                f"| {name} | {len(pages)} | {describe(rule)} | {k.kept:.2f} | "
                f"{k.precision:.3f} | {k.recall:.3f} | {k.f1:.3f} |"
            )
    return "\n".join(out)


def sweep(
    group: Mapping[str, Sequence[Page]], max_loss: float, also: Sequence[Cutoff]
) -> list[Cutoff]:
    """Print the best rules of a group of sets; return the rules for its table: the chosen
    one, the best of each family within the budget, the best ignoring the budget, `also`."""
    best, results = choose(group, candidates(), max_loss)
    full = {n: measure(p, FULL) for n, p in group.items()}

    def mean_f1(got: Mapping[str, Kept]) -> float:
        return statistics.fmean(k.f1 for k in got.values())

    def within(got: Mapping[str, Kept]) -> bool:
        return all(full[n].recall - got[n].recall <= max_loss + 1e-12 for n in got)

    print(f"\n{', '.join(group)}: {len(results)} rules tried; the best by mean F1:")
    ranked = sorted(results, key=lambda r: -mean_f1(r[1]))
    for rule, got in ranked[:10]:
        line = "; ".join(
            f"{n} kept {k.kept:.2f} P {k.precision:.3f} R {k.recall:.3f} F1 {k.f1:.3f}"
            for n, k in got.items()
        )
        print(f"  {describe(rule)}: {line}")
    print(
        f"  chosen (recall loss <= {max_loss:g} on each set): {describe(best) if best else 'none'}"
    )
    families: dict[str, tuple[float, Cutoff]] = {}
    for rule, got in results:
        if rule.floor or not within(got) or (rule.rule == "ratio" and rule.value == 0):
            continue
        if rule.rule not in families or mean_f1(got) > families[rule.rule][0] + 1e-12:
            families[rule.rule] = (mean_f1(got), rule)
    rules = [r for r in (best, *(r for _, r in families.values()), ranked[0][0], *also) if r]
    return list(dict.fromkeys(rules))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--index-root", type=Path, default=REPO / "indexes" / "eval")
    ap.add_argument("--sets", default=",".join((*SEARCH_SETS, SIMILAR_SET)))
    ap.add_argument("--mode", default="fused", help="the eval_retrieval mode of search sets")
    ap.add_argument("--sweep", action="store_true", help="try every candidate rule")
    ap.add_argument(
        "--max-loss",
        type=float,
        default=MAX_RECALL_LOSS,
        help="recall a chosen rule may lose against the full page, on each set",
    )
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    search = {n: load_pages(args.index_root, n, args.mode) for n in names if n != SIMILAR_SET}
    similar = {n: load_pages(args.index_root, n, SIMILAR_MODE) for n in names if n == SIMILAR_SET}
    shipped = RankParams()
    for group, rule in ((search, shipped.cutoff), (similar, shipped.similar_cutoff)):
        if not group:
            continue
        rules = [FULL, rule]
        if args.sweep:
            rules += sweep(group, args.max_loss, [shipped.cutoff])
        print()
        print(table(group, list(dict.fromkeys(rules))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
