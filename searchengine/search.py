"""Ranking: plan spaces, k-NN per space, exact re-scoring, BM25 fusion, filters, grouping.

Scores: each space's cosine is mapped to 0..1 by a per-space range (where unrelated and
strongly related pairs fall for that model family); BM25 is squashed to 0..1 by
b / (b + bm25_half). A segment's score is vector_weight * vector + (1 - vector_weight) *
bm25, and a file's score is its best segment plus a small bonus when its name matches.

Shown scores are clamped to 0..1, but order never is: hits with equal shown scores are
ordered by the unclamped value (then by catalog id), never by their names. The knobs are a
value, `RankParams`, which evaluations pass in instead of patching this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from searchengine.cutoff import Cutoff, kept
from searchengine.errors import ModelUnavailable
from searchengine.store.catalog import SegmentRow
from searchengine.types import FILE_TYPES, Filters, Hit, Hits, HitSegment

if TYPE_CHECKING:
    from searchengine.encoders.base import Encoder
    from searchengine.store.store import Store

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
WHOLE_FILE_TYPES = ("text", "image")
"""Types whose files `similar` compares as wholes (one vector per file); audio and video
are matched moment by moment, and list their matching moments."""


@dataclass(frozen=True)
class RankParams:
    """How hits are scored and ordered (docs/ranking.md says why each value)."""

    vector_weight: float = 0.5
    """Chosen on docs-titles and manpages-whatis together (docs/benchmarks.md)."""
    bm25_half: float = 4.0
    name_bonus: float = 0.15
    segments_per_hit: int = 3
    snippet_chars: int = 240
    mmr_lambda: float = 0.8
    near_duplicate: float = 0.9
    similar_floor: float = 0.3
    negative_weight: float = 0.5
    cosine_range: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(COSINE_RANGE)
    )
    calibration: Literal["fitted", "family", "raw"] = "fitted"
    """fitted: the index's own offset (calibration.json); family: the fixed COSINE_RANGE;
    raw: (cosine + 1) / 2, the plain cosine order (for evaluations)."""
    fusion: Literal["weighted", "rrf"] = "weighted"
    """weighted: vector_weight * vector + (1 - vector_weight) * bm25; rrf: reciprocal rank
    fusion of the two candidate orders, 1/(rrf_k + rank) each, scaled so 1 is first in both."""
    rrf_k: float = 60.0
    cutoff: Cutoff = Cutoff("gap", 0.12)
    """Which hits of a page stand out (searchengine/cutoff.py); used unless the whole page
    is asked for (`--all` or an explicit `-k`). Chosen by scripts/eval_cutoff.py: the best
    F1 losing at most 0.01 recall against the full page on either search set."""
    similar_cutoff: Cutoff = Cutoff()
    """The same for `similar`: off, as every rule that cuts costs recall on the man-page
    SEE ALSO set (docs/ranking.md)."""


DEFAULT_PARAMS = RankParams()


def glob_for(path: str | None) -> str | None:
    """A user's --path pattern as a SQLite GLOB over absolute paths (relative = any suffix)."""
    if not path:
        return None
    if path.startswith(("/", "*")):
        return path
    return "*/" + path


def calibrate(
    space: str,
    cosine: float,
    fitted: Mapping[str, tuple[float, float]] | None = None,
    params: RankParams = DEFAULT_PARAMS,
) -> float:
    """A space's cosine on 0..1, unclamped (callers clamp what they show, never what they
    order by): from the index's fitted range when it has one, else the family's range."""
    if params.calibration == "raw":
        return (cosine + 1.0) / 2.0
    ranges = fitted if params.calibration == "fitted" else None
    lo, hi = (ranges or {}).get(space) or params.cosine_range.get(space, (0.0, 1.0))
    return float((cosine - lo) / (hi - lo))


def clamp(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def squash_bm25(score: float, half: float = DEFAULT_PARAMS.bm25_half) -> float:
    return max(0.0, score) / (max(0.0, score) + half)


def matched_terms(query: str, text: str | None) -> list[str]:
    """The query's words that occur in a segment (by FTS5's porter stem), for `reason`."""
    from searchengine.store.catalog import fts_terms

    have = set(re.findall(r"\w+", (text or "").lower()))
    stems = {w[:5] for w in have}
    return [w for w in fts_terms(query) if w in have or w[:5] in stems]


def snippet(text: str | None, query: str, chars: int = DEFAULT_PARAMS.snippet_chars) -> str | None:
    """A window of the segment text around the first query word found in it."""
    if not text:
        return None
    flat = re.sub(r"\s+", " ", text).strip()
    if len(flat) <= chars:
        return flat
    pos = -1
    for word in re.findall(r"\w{3,}", query.lower()):
        pos = flat.lower().find(word)
        if pos != -1:
            break
    start = max(0, pos - chars // 3) if pos != -1 else 0
    start = flat.rfind(" ", 0, start) + 1 if start else 0
    out = flat[start : start + chars].rstrip()
    return ("…" if start else "") + out + ("…" if start + chars < len(flat) else "")


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
            merged.append(HitSegment(m.start, m.end, m.text, m.score, m.space, m.kind, m.loc))
    rest = [m for m in moments if m.score < best * MERGE_FRACTION or m.start is None]
    return sorted(merged, key=lambda m: -m.score) + rest  # stable: ties keep raw order


def best_moments(
    segs: list[tuple[float, SegmentRow]],
    file_type: str,
    best: float,
    query: str,
    params: RankParams = DEFAULT_PARAMS,
) -> list[HitSegment]:
    """A hit's segments to show, in the caller's order (best first by raw score): images
    have none, audio and video have their touching strong moments merged into ranges."""
    moments = [
        HitSegment(
            start=row.start,
            end=row.end,
            text=snippet(row.text, query, params.snippet_chars),
            score=score,
            space=row.space,
            kind=row.kind,
            loc=row.place(),
        )
        for score, row in segs
        if row.kind != "image"
    ]
    if file_type in ("audio", "video"):
        moments = merge_moments(moments, best)
    return moments[: params.segments_per_hit]


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
    cutoff: bool = False
    """Cut the page's tail by `RankParams.cutoff` (the engine's default page does)."""


def apply_cutoff(hits: list[Hit], cutoff: Cutoff) -> Hits:
    """The hits of a page that stand out (page order kept), and how many were cut."""
    keep = kept([h.score for h in hits], cutoff)
    page = Hits(h for h, k in zip(hits, keep, strict=True) if k)
    page.cut = len(hits) - len(page)
    return page


def rrf_scores(
    vector: Mapping[int, float], keywords: Mapping[int, float], k: float
) -> dict[int, float]:
    """Reciprocal rank fusion of two candidate orders (a candidate absent from one, or
    with no keyword match, gets nothing from it): sum of 1 / (k + rank), scaled by
    (k + 1) / 2 so that first in both is 1. Ties share the better rank's order by id."""
    out = {sid: 0.0 for sid in set(vector) | set(keywords)}
    for scores in (vector, {s: b for s, b in keywords.items() if b > 0}):
        for rank, sid in enumerate(sorted(scores, key=lambda s: (-scores[s], s)), start=1):
            out[sid] += 1.0 / (k + rank)
    return {sid: v * (k + 1) / 2 for sid, v in out.items()}


def order_hits(hits: list[Hit]) -> list[Hit]:
    """Best first: shown score, then the unclamped score, then catalog order. Never names."""
    return sorted(hits, key=lambda h: (-h.score, -h.raw_score, h.file_id))


@dataclass
class _Scored:
    """One candidate segment: shown score, unclamped score, row, and its two parts (the
    reason is written only for the hits that make the page)."""

    score: float
    raw: float
    row: SegmentRow
    vector: float
    keywords: float


@dataclass
class _Found:
    """A file's candidate segments (best first) and its name match, kept until the page is
    known, so snippets and reasons are made for k hits rather than every candidate."""

    segs: list[_Scored]
    name: float
    by_name_only: bool = False


class Ranker:
    """Runs queries over a Store; encoders come from `encoder_for(space)` (the light query
    encoders when the index has them), calibration keys from `models`."""

    def __init__(
        self,
        store: Store,
        encoder_for: Callable[[str], Encoder],
        models: Mapping[str, str],
        params: RankParams = DEFAULT_PARAMS,
    ) -> None:
        self.store = store
        self.catalog = store.catalog
        self.encoder_for = encoder_for
        self.models = dict(models)
        self.params = params

    # ---- text queries ------------------------------------------------------------------

    def run_query(self, q: Query) -> Hits:
        """Over-fetch, and fetch more while grouping by file leaves fewer than k files,
        until the spaces are exhausted or no unseen candidate could reach `min_score`; then
        diversify, take k, and cut the tail when `q.cutoff` asks."""
        if not q.text and q.like and not q.negative:
            hits = self.run_similar(q.like, q.k, q.filters, cutoff=q.cutoff)
            kept_hits = Hits(h for h in hits if h.score >= q.min_score)
            kept_hits.cut = hits.cut
            return kept_hits
        fetch = max(50, q.k * 8)
        vectors = self._query_vectors(q)
        while True:
            hits, exhausted, ceiling, found = self._rank(q, vectors, fetch)
            hits = [h for h in hits if h.score >= q.min_score]
            if len(hits) >= q.k or exhausted or ceiling < q.min_score:
                if q.diverse:
                    hits = self.diversify(hits, q.k)
                page = apply_cutoff(hits[: q.k], self.params.cutoff if q.cutoff else Cutoff())
                for hit in page:
                    self._explain(hit, found[hit.file_id], q.text)
                return page
            fetch *= 4

    def _explain(self, hit: Hit, found: _Found, query: str) -> None:
        """The reason and the shown moments of a hit on the page."""
        top = found.segs[0]
        if found.by_name_only:
            why = "file name"
        else:
            why = f"{top.row.space} similarity {top.vector:.2f}"
            if top.keywords > 0:
                terms = ", ".join(matched_terms(query, top.row.text))
                # stemmed matches ("bake" for "baking") have no literal term to show
                why += f", keywords {top.keywords:.2f}" + (f" ({terms})" if terms else "")
        if found.name > 0:
            why += f", file name {found.name:.2f}"
        hit.reason = why
        matched = [(s.score, s.row) for s in found.segs if s.score > 0 or s is top]
        hit.segments = best_moments(matched, hit.type, top.score, query, self.params)

    def _query_vectors(self, q: Query) -> dict[str, np.ndarray]:
        """One query vector per space: the words, plus an example's vector, minus `--not`."""
        wanted = q.filters.types
        out: dict[str, np.ndarray] = {}
        for space, types in TYPES_IN_SPACE.items():
            if wanted and not set(types) & set(wanted):
                continue
            if len(self.store.cache(space)) == 0:
                continue
            parts: list[np.ndarray] = []
            try:
                encoder = self.encoder_for(space)
                if q.text:
                    parts.append(encoder.embed_queries([q.text])[0])
                if q.like and space in q.like:
                    parts.append(q.like[space])
                if not parts:
                    continue
                vec = np.sum(parts, axis=0)
                if q.negative:
                    neg = encoder.embed_queries([q.negative])[0]
                    vec = vec - self.params.negative_weight * len(parts) * neg
            except ModelUnavailable:
                continue
            out[space] = (vec / (np.linalg.norm(vec) or 1.0)).astype(np.float32)
        return out

    def _rank(
        self, q: Query, query_vecs: dict[str, np.ndarray], fetch: int
    ) -> tuple[list[Hit], bool, float, dict[int, _Found]]:
        """Hits for one fetch size, whether nothing more can be fetched, and the best score
        a candidate not fetched yet could still reach."""
        p = self.params
        catalog = self.catalog
        filters = q.filters
        exhausted = True
        vec_scores: dict[int, float] = {}
        fitted = dict(self.store.calibration(self.models))
        if q.like:  # item-to-item likeness sits far above text-to-item cosines
            fitted.update({space: (p.similar_floor, 1.0) for space in q.like})
        lowest_vec = 0.0
        for space, qv in query_vecs.items():
            found, done = self.store.search(space, qv, fetch, filters, model=self.models[space])
            exhausted &= done
            if found and not done:
                lowest_vec = max(lowest_vec, calibrate(space, found[-1][1], fitted, p))
            vec_scores.update(found)
        bm25 = dict(catalog.bm25_segments(q.text, fetch, filters)) if q.text else {}
        lowest_bm25 = 0.0
        if len(bm25) >= fetch:
            exhausted = False
            lowest_bm25 = squash_bm25(min(bm25.values()), p.bm25_half)
        names = dict(catalog.bm25_files(q.text, fetch, filters)) if q.text else {}
        rows = catalog.segment_rows(set(vec_scores) | set(bm25))
        self._rescore_exact(rows, query_vecs, vec_scores)
        if q.text:
            rest = {sid: row.text for sid, row in rows.items() if sid not in bm25}
            bm25.update(catalog.bm25_of(q.text, rest))
        per_file: dict[int, list[_Scored]] = {}
        vec = {
            sid: calibrate(row.space, vec_scores[sid], fitted, p)
            for sid, row in rows.items()
            if sid in vec_scores
        }
        kw = {sid: squash_bm25(bm25.get(sid, 0.0), p.bm25_half) for sid in rows}
        rrf = rrf_scores(vec, kw, p.rrf_k) if p.fusion == "rrf" else {}
        for sid, row in rows.items():
            v, b = vec.get(sid, 0.0), kw[sid]
            raw = p.vector_weight * v + (1 - p.vector_weight) * b
            score = p.vector_weight * clamp(v) + (1 - p.vector_weight) * b
            if p.fusion == "rrf":
                raw = score = rrf[sid]
            per_file.setdefault(row.file_id, []).append(_Scored(score, raw, row, clamp(v), b))
        name_only = set(names) - set(per_file)
        for fid, row in catalog.first_segments(name_only).items():
            per_file[fid] = [_Scored(0.0, 0.0, row, 0.0, 0.0)]
        records = catalog.files_by_id(set(per_file) | set(names))
        hits = []
        found: dict[int, _Found] = {}
        best_name = 0.0
        for fid, segs in per_file.items():
            rec = records.get(fid)
            if rec is None or rec.state not in ("indexed", "pending"):
                continue
            segs.sort(key=lambda s: (-s.score, -s.raw, s.row.id))
            name = squash_bm25(names.get(fid, 0.0), p.bm25_half)
            best_name = max(best_name, name)
            top = segs[0]
            hit = Hit(path=rec.path, type=rec.type, score=min(1.0, top.score + p.name_bonus * name))
            hit.raw_score = top.raw + p.name_bonus * name
            hit.file_id = fid
            hit.best_segment = top.row.id
            found[fid] = _Found(segs, name, fid in name_only)
            hits.append(hit)
        ceiling = (
            p.vector_weight * clamp(lowest_vec)
            + (1 - p.vector_weight) * lowest_bm25
            + p.name_bonus * (1.0 if len(names) >= fetch else best_name)
        )
        return order_hits(hits), exhausted, ceiling, found

    def _rescore_exact(
        self,
        rows: dict[int, SegmentRow],
        query_vecs: dict[str, np.ndarray],
        vec_scores: dict[int, float],
    ) -> None:
        """Cosine from stored vectors for every candidate, including those only BM25 found."""
        missing = [
            sid for sid, r in rows.items() if sid not in vec_scores and r.space in query_vecs
        ]
        if not missing:
            return
        for sid, vec in self.catalog.vector_map(missing).items():
            qv = query_vecs[rows[sid].space]
            if vec.shape[0] == qv.shape[0]:
                vec_scores[sid] = float(vec @ qv)

    def diversify(self, hits: list[Hit], k: int) -> list[Hit]:
        """Reorder so near-duplicate files do not fill the page: each next hit maximises
        mmr_lambda * score - (1 - mmr_lambda) * likeness to the closest hit already chosen
        (cosine of best segments, same space and size, counted from near_duplicate up).
        One similarity matrix, then O(pool * k) numpy steps. Scores are left as they are."""
        p = self.params
        pool = hits[: max(k * 3, k + 10)]
        if len(pool) < 2:
            return hits
        by_seg = self.catalog.vector_map([h.best_segment for h in pool if h.best_segment])
        sims = np.zeros((len(pool), len(pool)), np.float32)
        groups: dict[int, list[int]] = {}
        for i, h in enumerate(pool):
            v = by_seg.get(h.best_segment) if h.best_segment else None
            if v is not None:
                groups.setdefault(v.shape[0], []).append(i)
        for members in groups.values():
            mat = np.vstack([by_seg[pool[i].best_segment] for i in members])  # type: ignore[index]
            idx = np.asarray(members)
            sims[np.ix_(idx, idx)] = mat @ mat.T
        sims[sims < p.near_duplicate] = 0.0
        relevance = p.mmr_lambda * np.array([h.score for h in pool], np.float32)
        closest = np.zeros(len(pool), np.float32)
        left = np.ones(len(pool), bool)
        chosen: list[int] = []
        while left.any() and len(chosen) < k:
            value = np.where(left, relevance - (1 - p.mmr_lambda) * closest, -np.inf)
            best = int(np.argmax(value))  # first of equals: the better-ranked hit
            chosen.append(best)
            left[best] = False
            closest = np.maximum(closest, sims[:, best])
        picked = set(chosen)
        rest = [h for i, h in enumerate(pool) if i not in picked]
        return [pool[i] for i in chosen] + rest + hits[len(pool) :]

    # ---- similar -----------------------------------------------------------------------

    def run_similar(
        self, example: dict[str, np.ndarray], k: int, filters: Filters, *, cutoff: bool = False
    ) -> Hits:
        """Files nearest to an example (one whole-file vector per space it lives in).
        Documents and images are compared as wholes, by their whole-file vectors; audio and
        video moment by moment, listing their matching moments, adjacent ones merged. Order
        is by raw cosine; the shown score maps it above `similar_floor` onto 0..1. With
        `cutoff`, the tail is cut by `RankParams.similar_cutoff`."""
        p = self.params
        wanted = list(filters.types or FILE_TYPES)
        best: dict[int, tuple[float, str, list[tuple[float, SegmentRow]]]] = {}

        def offer(fid: int, cos: float, space: str, segs: list[tuple[float, SegmentRow]]) -> None:
            if fid not in best or cos > best[fid][0]:
                best[fid] = (cos, space, segs)

        fetch = max(50, k * 4)
        for space, qv in example.items():
            types = [t for t in wanted if t in TYPES_IN_SPACE.get(space, ())]
            whole = [t for t in types if t in WHOLE_FILE_TYPES]
            moments = [t for t in types if t not in WHOLE_FILE_TYPES]
            if whole:
                found, _ = self.store.search(
                    space, qv, k, replace(filters, types=whole), level="file"
                )
                owners = self.catalog.file_ids_of_vectors([vid for vid, _ in found])
                for vid, cos in found:
                    if vid in owners:
                        offer(owners[vid], cos, space, [])
            if moments:
                found, _ = self._moments(space, qv, k, fetch, replace(filters, types=moments))
                rows = self.catalog.segment_rows([sid for sid, _ in found])
                per_file: dict[int, list[tuple[float, SegmentRow]]] = {}
                for sid, cos in found:
                    if sid in rows:
                        per_file.setdefault(rows[sid].file_id, []).append((cos, rows[sid]))
                for fid, segs in per_file.items():
                    offer(fid, segs[0][0], space, segs)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
        records = self.catalog.files_by_id(fid for fid, _ in ranked)
        shown = self._document_passages([(fid, v[1]) for fid, v in ranked if not v[2]], example)
        hits = []
        for fid, (cos, space, segs) in ranked:
            rec = records.get(fid)
            if rec is None:
                continue
            score = clamp((cos - p.similar_floor) / (1 - p.similar_floor))
            hit = Hit(path=rec.path, type=rec.type, score=score, reason=f"{space} likeness")
            hit.raw_score, hit.file_id = cos, fid
            moments = segs or shown.get(fid, [])
            display = [
                (clamp((c - p.similar_floor) / (1 - p.similar_floor)), row) for c, row in moments
            ]
            hit.segments = best_moments(display, rec.type, score, "", p)
            hits.append(hit)
        return apply_cutoff(order_hits(hits), p.similar_cutoff if cutoff else Cutoff())

    def _moments(
        self, space: str, qv: np.ndarray, k: int, fetch: int, filters: Filters
    ) -> tuple[list[tuple[int, float]], bool]:
        """Segments near the example, fetched until they cover k files (or run out)."""
        while True:
            found, exhausted = self.store.search(space, qv, fetch, filters)
            files = {sid for sid, _ in found}
            if exhausted or len(found) < fetch or len(files) >= k * 8:
                return found, exhausted
            rows = self.catalog.segment_rows([sid for sid, _ in found])
            if len({r.file_id for r in rows.values()}) >= k:
                return found, exhausted
            fetch *= 4

    def _document_passages(
        self, hits: list[tuple[int, str]], example: dict[str, np.ndarray]
    ) -> dict[int, list[tuple[float, SegmentRow]]]:
        """For documents found as wholes, the passages closest to the example, to show."""
        out: dict[int, list[tuple[float, SegmentRow]]] = {}
        by_space: dict[str, list[int]] = {}
        for fid, space in hits:
            by_space.setdefault(space, []).append(fid)
        for space, fids in by_space.items():
            out.update(
                self.catalog.best_segments(
                    fids, space, example[space], self.params.segments_per_hit
                )
            )
        return out
