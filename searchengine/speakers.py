"""Who speaks: speakers as clusters of `voice` segments, and search by voice.

Voice pieces (0.5-3 s) are first joined into turns: consecutive pieces of one file that
sound alike (`turns`), since a few seconds say far more about a voice than one piece.
Turns are clustered greedily, seeded: every speaker already known (named ones first) is a
seed centroid; each turn joins the most similar centroid when the cosine reaches
`SAME_SPEAKER` (chosen by measurement: scripts/eval_voices.py, docs/benchmarks.md), else
starts a new speaker; two passes then move each turn to its nearest centroid. A named
speaker keeps its centroid in the catalog, so its name outlives re-indexing, and a new
recording of the same voice joins it. Cost: O(turns x speakers) per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from searchengine.store.voices import VoiceRows, VoiceStore

SAME_SPEAKER = 0.80
"""Cosine (a turn to a speaker centroid) at or above which the turn is that speaker's."""
MATCH = 0.70
"""Cosine (query voice to a segment) at or above which `similar --voice` shows a moment."""
REFINE_PASSES = 2
SAME_TURN = 0.60
"""Cosine (piece to the turn so far) for a piece to continue a turn: the pieces' EER
threshold on real speakers (docs/benchmarks.md)."""
TURN_GAP = 1.0
"""Seconds of pause after which speech starts a new turn."""
TURN_MAX_S = 30.0


def cluster(
    vectors: np.ndarray,
    seeds: list[tuple[int, np.ndarray]],
    threshold: float = SAME_SPEAKER,
) -> tuple[list[int | str], dict[int | str, np.ndarray]]:
    """Label each row with a seed's id or a new key ("new-N"); returns (labels, centroids)."""
    keys: list[int | str] = [sid for sid, _ in seeds]
    sums = [np.asarray(c, dtype=np.float64) * 1.0 for _, c in seeds]
    counts = [0.0] * len(seeds)
    labels = np.full(len(vectors), -1, dtype=np.int64)
    cents = np.array(sums, dtype=np.float32).reshape(
        len(sums), vectors.shape[1] if len(vectors) else 0
    )
    for i, vec in enumerate(vectors):
        if len(cents):
            sims = cents @ vec
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                labels[i] = j
                # a seed's stored centroid weighs as one member, so new members can move it
                sums[j] = sums[j] + vec
                counts[j] += 1
                cents[j] = sums[j] / (np.linalg.norm(sums[j]) or 1.0)
                continue
        keys.append(f"new-{len(keys)}")
        sums.append(vec.astype(np.float64))
        counts.append(1.0)
        cents = np.vstack([cents, vec[None, :]]) if len(cents) else vec[None, :].copy()
        labels[i] = len(keys) - 1
    for _ in range(REFINE_PASSES):
        sims = vectors @ cents.T if len(vectors) else np.zeros((0, len(cents)))
        best = sims.argmax(axis=1) if len(vectors) else labels
        keep = sims[np.arange(len(vectors)), best] >= threshold if len(vectors) else labels
        labels = np.where(keep, best, labels)
        for j in range(len(cents)):
            members = vectors[labels == j]
            if len(members):
                mean = members.mean(axis=0)
                cents[j] = mean / (np.linalg.norm(mean) or 1.0)
    return [keys[j] for j in labels], {keys[j]: cents[j] for j in range(len(keys))}


def turns(rows: VoiceRows, same: float = SAME_TURN, gap: float = TURN_GAP) -> list[list[int]]:
    """Row indexes grouped into turns: consecutive pieces of one file, at most `gap` seconds
    apart, each like the turn so far (cosine >= `same`) and the turn under TURN_MAX_S."""
    order = sorted(range(len(rows)), key=lambda i: (rows.file_ids[i], rows.starts[i]))
    out: list[list[int]] = []
    total = np.zeros(rows.vectors.shape[1] if len(rows) else 0)
    for i in order:
        if out:
            last = out[-1][-1]
            mean = total / (np.linalg.norm(total) or 1.0)
            if (
                rows.file_ids[i] == rows.file_ids[last]
                and rows.starts[i] - rows.ends[last] <= gap
                and rows.ends[i] - rows.starts[out[-1][0]] <= TURN_MAX_S
                and float(rows.vectors[i] @ mean) >= same
            ):
                out[-1].append(i)
                total = total + rows.vectors[i] * (rows.ends[i] - rows.starts[i])
                continue
        out.append([i])
        total = rows.vectors[i] * max(rows.ends[i] - rows.starts[i], 1e-3)
    return out


def cluster_rows(
    rows: VoiceRows, seeds: list[tuple[int, np.ndarray]], threshold: float = SAME_SPEAKER
) -> tuple[list[int | str], dict[int | str, np.ndarray]]:
    """Speaker labels of voice rows: pieces are first joined into turns (a few seconds say
    far more about a voice than one piece: docs/benchmarks.md), turns are clustered by their
    duration-weighted mean, and each piece takes its turn's speaker."""
    if not len(rows):
        return [], {}
    groups = turns(rows)
    means = []
    for g in groups:
        w = np.maximum(rows.ends[g] - rows.starts[g], 1e-3)[:, None]
        m = (rows.vectors[g] * w).sum(axis=0)
        means.append(m / (np.linalg.norm(m) or 1.0))
    turn_labels, cents = cluster(np.array(means, dtype=np.float32), seeds, threshold)
    labels: list[int | str] = [""] * len(rows)
    for g, key in zip(groups, turn_labels, strict=True):
        for i in g:
            labels[i] = key
    return labels, cents


def recluster(voices: VoiceStore, model: str, threshold: float = SAME_SPEAKER) -> int:
    """Cluster every voice segment of `model` into speakers and store it; returns how many
    speakers have segments. Named speakers seed first, so they keep their names."""
    rows = voices.rows(model)
    known = [s for s in voices.speakers() if s.centroid is not None and s.model == model]
    known.sort(key=lambda s: (s.name is None, s.id))
    dim = rows.vectors.shape[1] if len(rows) else 0
    seeds = [(s.id, s.centroid) for s in known if dim and len(s.centroid) == dim]  # type: ignore[arg-type]
    labels, cents = cluster_rows(rows, seeds, threshold)
    moved = [s.id for s in voices.speakers() if s.name is not None and s.model != model]
    labels, cents = follow_names(rows, labels, cents, voices.moments(moved))
    groups: dict[int | str, list[int]] = {}
    for seg, key in zip(rows.ids.tolist(), labels, strict=True):
        groups.setdefault(key, []).append(seg)
    named = {s.id for s in known if s.name is not None} | set(moved)
    clusters = {k: (groups.get(k, []), c) for k, c in cents.items() if k in groups or k in named}
    voices.save(model, clusters)
    return len(groups)


def follow_names(
    rows: VoiceRows,
    labels: list[int | str],
    cents: dict[int | str, np.ndarray],
    moments: dict[int, list[tuple[int, float, float]]],
) -> tuple[list[int | str], dict[int | str, np.ndarray]]:
    """Named speakers of another voice model (their centroid cannot be compared) take over
    the new cluster that talks most in their remembered moments (file, start, end)."""
    for sid, spans in sorted(moments.items()):
        by_file: dict[int, list[tuple[float, float]]] = {}
        for fid, a, b in spans:
            by_file.setdefault(fid, []).append((a, b))
        overlap: dict[int | str, float] = {}
        for i, key in enumerate(labels):
            if not isinstance(key, str):
                continue  # a seeded speaker keeps its own id
            for a, b in by_file.get(int(rows.file_ids[i]), ()):
                o = min(b, rows.ends[i]) - max(a, rows.starts[i])
                if o > 0:
                    overlap[key] = overlap.get(key, 0.0) + float(o)
        if not overlap:
            continue
        best = max(overlap, key=lambda k: overlap[k])
        labels = [sid if key == best else key for key in labels]
        cents[sid] = cents.pop(best)
    return labels, cents


@dataclass
class VoiceMatch:
    """A file where the query voice speaks: its best cosine and its matching moments."""

    file_id: int
    score: float
    moments: list[tuple[float, float, float]] = field(default_factory=list)  # start, end, cos


def search_voice(
    rows: VoiceRows,
    query: np.ndarray,
    k: int,
    min_score: float = MATCH,
    exclude: set[int] = frozenset(),
) -> list[VoiceMatch]:
    """Files ranked by how closely their voice segments match `query` (a unit vector); each
    with its moments at or above `min_score`, adjacent ones merged, best first."""
    if not len(rows):
        return []
    sims = rows.vectors @ query.astype(np.float32)
    by_file: dict[int, list[int]] = {}
    for i in np.argsort(-sims):
        if sims[i] < min_score:
            break
        fid = int(rows.file_ids[i])
        if fid not in exclude:
            by_file.setdefault(fid, []).append(int(i))
    out = []
    for fid, idx in by_file.items():
        moments = merge_moments(
            sorted((float(rows.starts[i]), float(rows.ends[i]), float(sims[i])) for i in idx)
        )
        moments.sort(key=lambda m: -m[2])
        out.append(VoiceMatch(fid, float(sims[idx[0]]), moments))
    out.sort(key=lambda m: (-m.score, m.file_id))
    return out[:k]


def merge_moments(
    moments: list[tuple[float, float, float]], gap: float = 0.5
) -> list[tuple[float, float, float]]:
    """Time-ordered (start, end, score) pieces joined where they touch (best score kept)."""
    merged: list[tuple[float, float, float]] = []
    for start, end, score in moments:
        if merged and start - merged[-1][1] <= gap:
            a, b, s = merged[-1]
            merged[-1] = (a, max(b, end), max(s, score))
        else:
            merged.append((start, end, score))
    return merged


def speaker_at(
    speech: list[tuple[float, float, int]], start: float | None, end: float | None
) -> int | None:
    """The speaker who talks most within [start, end] (a hit's moment), if anyone does."""
    if start is None or not speech:
        return None
    end = start if end is None else end
    overlap: dict[int, float] = {}
    for a, b, sid in speech:
        o = min(b, end) - max(a, start)
        if o > 0 or (start == end and a <= start <= b):
            overlap[sid] = overlap.get(sid, 0.0) + max(o, 1e-3)
    return max(overlap, key=lambda s: overlap[s]) if overlap else None


def label(speaker_id: int, name: str | None) -> str:
    return name if name else f"speaker {speaker_id}"
