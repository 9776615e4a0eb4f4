"""Recommendation from examples (`searchengine recommend`): Rocchio in each vector space.

Per space, the query is

    q = LIKED_WEIGHT * mean(liked) - DISLIKED_WEIGHT * mean(disliked), then L2-normalised,

over the examples' whole-file vectors in that space (Rocchio's a * q0 term is absent: there
is no text query; `search QUERY --like FILE` is that case). The disliked term pulls the
query away from what was rejected, at half the weight of what was liked (as `--not` does
for words in `search`, RankParams.negative_weight), so a page is steered, not inverted. A
space holding no liked example is not searched. Ranking, filters, grouping and the cutoff
are those of `similar` (search.Ranker.run_similar).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

LIKED_WEIGHT = 1.0
DISLIKED_WEIGHT = 0.5


def rocchio(
    liked: Sequence[Mapping[str, np.ndarray]],
    disliked: Sequence[Mapping[str, np.ndarray]] = (),
    liked_weight: float = LIKED_WEIGHT,
    disliked_weight: float = DISLIKED_WEIGHT,
) -> dict[str, np.ndarray]:
    """Per space with a liked example: the normalised Rocchio query vector."""
    out: dict[str, np.ndarray] = {}
    spaces = {s for ex in liked for s in ex}
    for space in sorted(spaces):
        pos = [ex[space] for ex in liked if space in ex]
        vec = liked_weight * np.mean(pos, axis=0)
        neg = [ex[space] for ex in disliked if space in ex and ex[space].shape == vec.shape]
        if neg:
            vec = vec - disliked_weight * np.mean(neg, axis=0)
        norm = float(np.linalg.norm(vec))
        if norm > 1e-6:
            out[space] = (vec / norm).astype(np.float32)
    return out


def nearest(
    item: Mapping[str, np.ndarray], examples: Sequence[Mapping[str, np.ndarray]], space: str
) -> int | None:
    """Index of the example whose vector in `space` is closest to the item's (cosine), or,
    when they share no vector in that space, in any space they share; None if none."""
    for spaces in ([space], sorted(item)):
        best, best_cos = None, -np.inf
        for i, ex in enumerate(examples):
            for s in spaces:
                if s in item and s in ex and ex[s].shape == item[s].shape:
                    cos = float(ex[s] @ item[s])
                    if cos > best_cos:
                        best, best_cos = i, cos
        if best is not None:
            return best
    return None
