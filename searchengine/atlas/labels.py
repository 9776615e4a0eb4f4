"""Clusters of the map and the words that tell them apart.

Clusters: HDBSCAN (scikit-learn) on the 2-D layout, the way BERTopic groups a UMAP
projection: it finds dense islands of any shape and leaves the scattered points out (they
form an 'other' group). The smallest cluster grows with the map, so a big collection gets
tens of clusters, not thousands. Labels: class-based TF-IDF (c-TF-IDF): each cluster's
files make one document (file names, folders, document text, transcripts); a word scores
by its frequency in the cluster times log(1 + average cluster size / its frequency over
all clusters), so words common everywhere ("img", "the") fall away."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePath

import numpy as np

OTHER = -1
"""Cluster id of points in no cluster."""
MIN_CLUSTERED = 8
"""Fewer points than this make one cluster (density means nothing on a handful)."""
CLUSTER_SAMPLE = 20_000
"""Points HDBSCAN runs on at most; the others join their nearest sampled point's cluster."""
WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
STOP = frozenset(
    """the and for with that this from are was were have has had not but you your they their
    them its our his her she him who what when where which while will would can could should
    into onto over under than then there these those about after before also been being
    just more most other some such only very all any each few own same out off too here
    why how one two new use used using via per jpg jpeg png gif webp heic mp3 mp4 wav ogg
    oga flac mkv mov avi webm txt pdf html htm doc docx srt vtt img dsc file files""".split()
)


def clusters(xy: np.ndarray) -> np.ndarray:
    """A cluster id per point (OTHER for none), numbered by size, largest first."""
    n = len(xy)
    if n < MIN_CLUSTERED:
        return np.zeros(n, np.int64)
    from sklearn.cluster import HDBSCAN

    if n > CLUSTER_SAMPLE:  # HDBSCAN's tree is quadratic-ish: cluster a sample, then
        rng = np.random.default_rng(0)  # give every point its nearest sampled point's cluster
        picked = rng.choice(n, size=CLUSTER_SAMPLE, replace=False)
        inner = clusters(xy[picked])
        from sklearn.neighbors import KNeighborsClassifier

        nearest = KNeighborsClassifier(n_neighbors=1).fit(xy[picked], inner)
        return nearest.predict(xy).astype(np.int64)
    smallest = max(5, n // 40)
    found = HDBSCAN(
        min_cluster_size=smallest, min_samples=min(10, smallest), algorithm="kd_tree", copy=True
    ).fit_predict(xy)
    if (found == OTHER).all():  # no structure at all: one cluster
        return np.zeros(n, np.int64)
    order = [c for c, _ in Counter(found[found != OTHER].tolist()).most_common()]
    renumber = {c: i for i, c in enumerate(order)}
    return np.array([renumber.get(int(c), OTHER) for c in found], np.int64)


def words_of(path: str, text: str | None) -> list[str]:
    """The words a file brings to its cluster: its name and two parent folders, then text."""
    parts = PurePath(path).parts[-3:]
    stem = " ".join([*parts[:-1], PurePath(parts[-1]).stem]) if parts else ""
    raw = f"{stem} {text or ''}"
    return [w for w in (m.lower() for m in WORD.findall(raw)) if w not in STOP]


def label(ids: np.ndarray, docs: Sequence[list[str]], top: int = 3) -> dict[int, list[str]]:
    """The `top` most distinctive words of each cluster (c-TF-IDF)."""
    groups = sorted(set(ids.tolist()))
    counts: dict[int, Counter[str]] = {c: Counter() for c in groups}
    for cid, words in zip(ids.tolist(), docs, strict=True):
        counts[cid].update(set(words))  # a word counts once per file: one long text cannot win
    overall: Counter[str] = Counter()
    for c in groups:
        overall.update(counts[c])
    if not overall:
        return {c: [] for c in groups}
    average = sum(sum(v.values()) for v in counts.values()) / max(len(groups), 1)
    out: dict[int, list[str]] = {}
    for c in groups:
        total = sum(counts[c].values()) or 1
        scored = sorted(
            ((n / total) * np.log(1 + average / overall[w]), w)
            for w, n in counts[c].items()
            if n >= 1
        )
        out[c] = [w for _, w in reversed(scored[-top:])]
    return out
