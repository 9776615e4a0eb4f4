"""Ranking: plan spaces, k-NN per space, exact re-scoring, BM25 fusion, filters, grouping.

Scores: each space's cosine is mapped to 0..1 by a per-space range (where unrelated and
strongly related pairs fall for that model family); BM25 is squashed to 0..1 by
b / (b + BM25_HALF). A segment's score is VECTOR_WEIGHT * vector + (1 - VECTOR_WEIGHT) * bm25,
and a file's score is its best segment plus a small bonus when its name matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from searchengine.errors import ModelUnavailable
from searchengine.store.catalog import SegmentRow
from searchengine.types import Filters, Hit, HitSegment

if TYPE_CHECKING:
    from searchengine.engine import Engine

COSINE_RANGE: dict[str, tuple[float, float]] = {
    "text": (0.05, 0.75),
    "clip": (0.12, 0.36),
    "clap": (0.0, 0.6),
}
TYPES_IN_SPACE: dict[str, tuple[str, ...]] = {
    "text": ("text", "audio", "video"),
    "clip": ("image", "video"),
    "clap": ("audio", "video"),
}
VECTOR_WEIGHT = 0.7
BM25_HALF = 4.0
NAME_BONUS = 0.15
SEGMENTS_PER_HIT = 3
SNIPPET_CHARS = 240


@dataclass
class Query:
    """A search: words, optionally an example's vectors to add and words to subtract."""

    text: str
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    min_score: float = 0.0
    like: dict[str, np.ndarray] | None = None
    negative: str | None = None
    diverse: bool = True


def glob_for(path: str | None) -> str | None:
    """A user's --path pattern as a SQLite GLOB over absolute paths (relative = any suffix)."""
    if not path:
        return None
    if path.startswith(("/", "*")):
        return path
    return "*/" + path


def calibrate(
    space: str, cosine: float, fitted: dict[str, tuple[float, float]] | None = None
) -> float:
    """A space's cosine on 0..1: from the index's fitted range when it has one, else from the
    model family's typical range."""
    lo, hi = (fitted or {}).get(space) or COSINE_RANGE.get(space, (0.0, 1.0))
    return float(min(1.0, max(0.0, (cosine - lo) / (hi - lo))))


def squash_bm25(score: float) -> float:
    return max(0.0, score) / (max(0.0, score) + BM25_HALF)


def matched_terms(query: str, text: str | None) -> list[str]:
    """The query's words that occur in a segment (by FTS5's porter stem), for `reason`."""
    from searchengine.store.catalog import fts_terms

    have = set(re.findall(r"\w+", (text or "").lower()))
    stems = {w[:5] for w in have}
    return [w for w in fts_terms(query) if w in have or w[:5] in stems]


def snippet(text: str | None, query: str) -> str | None:
    """A window of the segment text around the first query word found in it."""
    if not text:
        return None
    flat = re.sub(r"\s+", " ", text).strip()
    if len(flat) <= SNIPPET_CHARS:
        return flat
    pos = -1
    for word in re.findall(r"\w{3,}", query.lower()):
        pos = flat.lower().find(word)
        if pos != -1:
            break
    start = max(0, pos - SNIPPET_CHARS // 3) if pos != -1 else 0
    start = flat.rfind(" ", 0, start) + 1 if start else 0
    out = flat[start : start + SNIPPET_CHARS].rstrip()
    return ("…" if start else "") + out + ("…" if start + SNIPPET_CHARS < len(flat) else "")


MERGE_GAP_S = 0.5
MERGE_FRACTION = 0.95
"""Moments scoring within this fraction of a file's best one are merged when they touch."""


def merge_moments(moments: list[HitSegment], best: float) -> list[HitSegment]:
    """Adjacent or overlapping strong moments of one kind become one time range, best first,
    so a scene matched by four consecutive frames reads as one hit, not four."""
    strong = sorted(
        (m for m in moments if m.score >= best * MERGE_FRACTION and m.start is not None),
        key=lambda m: (m.kind, m.start),
    )
    merged: list[HitSegment] = []
    for m in strong:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.kind == m.kind
            and m.start <= (last.end or last.start) + MERGE_GAP_S
        ):
            last.end = max(last.end or last.start, m.end or m.start)
            if m.text and m.text != last.text and m.kind == "speech":
                last.text = f"{last.text} {m.text}" if last.text else m.text
            last.score = max(last.score, m.score)
        else:
            merged.append(HitSegment(m.start, m.end, m.text, m.score, m.space, m.kind))
    rest = [m for m in moments if m.score < best * MERGE_FRACTION or m.start is None]
    return sorted(merged, key=lambda m: -m.score) + rest


def best_moments(
    segs: list[tuple[float, SegmentRow]], file_type: str, best: float, query: str
) -> list[HitSegment]:
    """A hit's segments to show, best first: images have none, audio and video have their
    touching strong moments merged into time ranges."""
    moments = [
        HitSegment(
            start=row.start,
            end=row.end,
            text=snippet(row.text, query),
            score=score,
            space=row.space,
            kind=row.kind,
        )
        for score, row in segs
        if row.kind != "image"
    ]
    if file_type in ("audio", "video"):
        moments = merge_moments(moments, best)
    return moments[:SEGMENTS_PER_HIT]


def run_query(engine: Engine, q: Query) -> list[Hit]:
    """Over-fetch, and fetch more while grouping by file leaves fewer than k files."""
    if not q.text and q.like and not q.negative:
        hits = run_similar(engine, q.like, q.k, q.filters)
        return [h for h in hits if h.score >= q.min_score]
    fetch = max(50, q.k * 8)
    vectors = _query_vectors(engine, q)
    while True:
        hits, exhausted = _rank(engine, q, vectors, fetch)
        hits = [h for h in hits if h.score >= q.min_score]
        if len(hits) >= q.k or exhausted:
            if q.diverse:
                hits = diversify(engine, hits, q.k)
            return hits[: q.k]
        fetch *= 4


NEGATIVE_WEIGHT = 0.5
"""How much of a `--not` phrase's direction is subtracted from the query."""


def _query_vectors(engine: Engine, q: Query) -> dict[str, np.ndarray]:
    """One query vector per space: the words, plus an example's vector, minus `--not` words."""
    wanted = q.filters.types
    out: dict[str, np.ndarray] = {}
    for space, types in TYPES_IN_SPACE.items():
        if wanted and not set(types) & set(wanted):
            continue
        if len(engine.vectors(space)) == 0:
            continue
        parts: list[np.ndarray] = []
        try:
            encoder = engine.models.encoder(space)
            if q.text:
                parts.append(encoder.embed_queries([q.text])[0])
            if q.like and space in q.like:
                parts.append(q.like[space])
            if not parts:
                continue
            vec = np.sum(parts, axis=0)
            if q.negative:
                vec = vec - NEGATIVE_WEIGHT * len(parts) * encoder.embed_queries([q.negative])[0]
        except ModelUnavailable:
            continue
        out[space] = (vec / (np.linalg.norm(vec) or 1.0)).astype(np.float32)
    return out


def _rank(
    engine: Engine, q: Query, query_vecs: dict[str, np.ndarray], fetch: int
) -> tuple[list[Hit], bool]:
    catalog = engine.catalog
    filters = q.filters
    exhausted = True
    vec_scores: dict[int, float] = {}
    fitted = dict(engine.calibration())
    if q.like:  # item-to-item likeness sits far above text-to-item cosines
        fitted.update({space: (SIMILAR_FLOOR, 1.0) for space in q.like})
    for space, qv in query_vecs.items():
        allowed = catalog.allowed_segments(space, filters) if filters.active() else None
        found = engine.vectors(space).search(qv, fetch, allowed)
        if len(found) >= fetch:
            exhausted = False
        for sid, score in found:
            vec_scores[sid] = score
    bm25 = dict(catalog.bm25_segments(q.text, fetch, filters)) if q.text else {}
    if len(bm25) >= fetch:
        exhausted = False
    names = dict(catalog.bm25_files(q.text, fetch, filters)) if q.text else {}
    rows = catalog.segment_rows(set(vec_scores) | set(bm25))
    _rescore_exact(engine, rows, query_vecs, vec_scores)
    scored: dict[int, list[tuple[float, SegmentRow, str]]] = {}
    for sid, row in rows.items():
        v = calibrate(row.space, vec_scores[sid], fitted) if sid in vec_scores else 0.0
        b = squash_bm25(bm25.get(sid, 0.0))
        score = VECTOR_WEIGHT * v + (1 - VECTOR_WEIGHT) * b
        why = f"{row.space} similarity {v:.2f}"
        if b > 0:
            why += f", keywords {b:.2f} ({', '.join(matched_terms(q.text, row.text))})"
        scored.setdefault(row.file_id, []).append((score, row, why))
    for fid, row in catalog.first_segments(set(names) - set(scored)).items():
        scored[fid] = [(0.0, row, "file name")]
    records = catalog.files_by_id(set(scored) | set(names))
    hits = []
    for fid, segs in scored.items():
        rec = records.get(fid)
        if rec is None or rec.state not in ("indexed", "pending"):
            continue
        segs.sort(key=lambda s: -s[0])
        name = squash_bm25(names.get(fid, 0.0))
        best, top, why = segs[0]
        score = min(1.0, best + NAME_BONUS * name)
        if name > 0:
            why += f", file name {name:.2f}"
        hit = Hit(path=rec.path, type=rec.type, score=score, reason=why)
        hit.best_segment = top.id
        matched = [(sc, row) for sc, row, _ in segs if sc > 0 or row is top]
        hit.segments = best_moments(matched, rec.type, best, q.text)
        hits.append(hit)
    hits.sort(key=lambda h: (-h.score, h.path))
    return hits, exhausted


MMR_LAMBDA = 0.8
NEAR_DUPLICATE = 0.9
"""Maximal marginal relevance, restricted to near duplicates: a hit is penalised only for
likeness of at least NEAR_DUPLICATE to a hit already chosen. Penalising all likeness
reorders topical neighbours too, which cost a fifth of recall@5 on docs-titles."""


def diversify(engine: Engine, hits: list[Hit], k: int) -> list[Hit]:
    """Reorder so near-duplicate files do not fill the page: each next hit maximises
    MMR_LAMBDA * score - (1 - MMR_LAMBDA) * likeness to the closest hit already chosen
    (cosine of best segments, same space, counted from NEAR_DUPLICATE up). Scores themselves
    are left as they are."""
    pool = hits[: max(k * 3, k + 10)]
    by_seg = engine.catalog.vector_map([h.best_segment for h in pool if h.best_segment])
    vecs = [by_seg.get(h.best_segment) if h.best_segment else None for h in pool]
    chosen: list[int] = []
    left = list(range(len(pool)))
    while left and len(chosen) < k:

        def mmr(i: int) -> float:
            v = vecs[i]
            sims = [
                float(v @ vecs[j])
                for j in chosen
                if v is not None and vecs[j] is not None and vecs[j].shape == v.shape
            ]
            likeness = max(sims, default=0.0)
            penalty = likeness if likeness >= NEAR_DUPLICATE else 0.0
            return MMR_LAMBDA * pool[i].score - (1 - MMR_LAMBDA) * penalty

        best = max(left, key=lambda i: (mmr(i), -i))
        chosen.append(best)
        left.remove(best)
    return [pool[i] for i in chosen] + [h for h in hits if h not in pool]


def _rescore_exact(
    engine: Engine,
    rows: dict[int, SegmentRow],
    query_vecs: dict[str, np.ndarray],
    vec_scores: dict[int, float],
) -> None:
    """Cosine from stored vectors for every candidate, including those only BM25 found."""
    missing = [sid for sid, r in rows.items() if sid not in vec_scores and r.space in query_vecs]
    if not missing:
        return
    for sid, vec in engine.catalog.vector_map(missing).items():
        qv = query_vecs[rows[sid].space]
        if vec.shape[0] == qv.shape[0]:
            vec_scores[sid] = float(vec @ qv)


SIMILAR_FLOOR = 0.3
"""Item-to-item cosines sit higher than text-to-item ones; below this nothing is alike."""


def run_similar(
    engine: Engine, example: dict[str, np.ndarray], k: int, filters: Filters
) -> list[Hit]:
    """Files nearest to an example's vectors (one mean vector per space it lives in); audio
    and video hits list their matching moments, adjacent ones merged."""
    catalog = engine.catalog
    types = filters.types
    fetch = max(50, k * 8)
    while True:
        per_file: dict[int, list[tuple[float, SegmentRow]]] = {}
        exhausted = True
        for space, qv in example.items():
            if types and not set(TYPES_IN_SPACE.get(space, ())) & set(types):
                continue
            allowed = catalog.allowed_segments(space, filters) if filters.active() else None
            found = engine.vectors(space).search(qv, fetch, allowed)
            exhausted &= len(found) < fetch
            rows = catalog.segment_rows([sid for sid, _ in found])
            for sid, cos in found:
                if sid in rows:
                    score = min(1.0, max(0.0, (cos - SIMILAR_FLOOR) / (1 - SIMILAR_FLOOR)))
                    per_file.setdefault(rows[sid].file_id, []).append((score, rows[sid]))
        if len(per_file) >= k or exhausted:
            break
        fetch *= 4
    hits = []
    for segs in per_file.values():
        segs.sort(key=lambda s: -s[0])
        best, top = segs[0]
        hit = Hit(path=top.path, type=top.type, score=best, reason=f"{top.space} likeness")
        hit.segments = best_moments(segs, top.type, best, "")
        hits.append(hit)
    hits.sort(key=lambda h: (-h.score, h.path))
    return hits[:k]
