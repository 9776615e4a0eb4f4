"""The adaptive cutoff: which hits of a page stand out, so a query need not always fill k.

A fixed score threshold fails because scores move from query to query (a clear match may
score 0.6 on one query and junk 0.5 on another), so the tail is cut relative to the page
itself: where scores fall away from the best hit. The rule and its numbers are a value,
`Cutoff`, held in `RankParams`; docs/ranking.md gives the measurements that chose them.
Pure functions over a list of scores: no I/O, no models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Rule = Literal["off", "ratio", "drop", "gap", "knee"]


@dataclass(frozen=True)
class Cutoff:
    """How the tail of a page is cut.

    - `off`: keep the whole page.
    - `ratio`: keep scores >= value * best.
    - `drop`: keep scores >= best - value.
    - `gap`: cut at the widest gap between consecutive scores (sorted), when that gap is
      at least `value` wide; otherwise keep the page.
    - `knee`: cut after the point of the sorted scores farthest below the chord from the
      best to the last score (Kneedle), when that distance is at least `value`.

    `floor` is an absolute score below which hits are cut whatever the rule (but never all:
    `min_keep` best hits always stay).
    """

    rule: Rule = "off"
    value: float = 0.0
    floor: float = 0.0
    min_keep: int = 1


def threshold(scores: Sequence[float], cutoff: Cutoff) -> float:
    """The lowest score a hit of this page needs to be kept (-inf keeps everything)."""
    ranked = sorted((float(s) for s in scores), reverse=True)
    if not ranked or cutoff.rule == "off":
        return float("-inf")
    best = ranked[0]
    if cutoff.rule == "ratio":
        cut = cutoff.value * best
    elif cutoff.rule == "drop":
        cut = best - cutoff.value
    elif cutoff.rule == "gap":
        cut = _gap(ranked, cutoff.value)
    elif cutoff.rule == "knee":
        cut = _knee(ranked, cutoff.value)
    else:
        raise ValueError(f"unknown cutoff rule {cutoff.rule!r}")
    return max(cut, cutoff.floor)


def _gap(ranked: list[float], least: float) -> float:
    """The score just above the widest gap (the first of equal gaps), if it is wide enough."""
    if len(ranked) < 2:
        return float("-inf")
    gaps = [a - b for a, b in zip(ranked, ranked[1:], strict=False)]
    at = max(range(len(gaps)), key=lambda i: (gaps[i], -i))
    return ranked[at] if gaps[at] >= least else float("-inf")


def _knee(ranked: list[float], least: float) -> float:
    """Kneedle on a falling curve: the knee is the score farthest below the straight line
    from the first to the last score (in units of the page's score range and length), the
    first point of the flat tail; the hits before it are kept."""
    n = len(ranked)
    span = ranked[0] - ranked[-1]
    if n < 3 or span <= 0:
        return float("-inf")
    depth = [(ranked[0] - s) / span - i / (n - 1) for i, s in enumerate(ranked)]
    at = max(range(n), key=lambda i: (depth[i], -i))
    return ranked[at - 1] if at > 0 and depth[at] >= least else float("-inf")


def kept(scores: Sequence[float], cutoff: Cutoff) -> list[bool]:
    """For each score of a page (in page order), whether the hit stays. The `min_keep`
    best-scoring hits always stay, so a page with hits never becomes empty."""
    floor = threshold(scores, cutoff)
    keep = [s >= floor for s in scores]
    best_first = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    for i in best_first[: max(0, cutoff.min_keep)]:
        keep[i] = True
    return keep
