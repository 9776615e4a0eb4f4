"""Per-index score calibration: where a space's cosines sit for unrelated content on *this*
index, so that a space whose vectors all lean one way does not look relevant everywhere.

For each space with enough vectors, a fixed set of generic probe queries is embedded and
compared with a sample of stored vectors; `lo` is the median cosine: what an unrelated match
scores here. A cosine then maps linearly from [lo, lo + span] to [0, 1], where `span` is the
model family's width (search.COSINE_RANGE). Only the offset is fitted: an early version also
fitted the top of the range (the mean best cosine of the vague probes), which squeezed every
good match to 1.0 and cost a third of recall@1 on the docs-titles evaluation
(docs/benchmarks.md). The fit is stored in the index folder and refreshed when the space's
model changes or its size moves by a fifth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from searchengine.encoders.registry import SPACES
from searchengine.errors import ModelUnavailable

if TYPE_CHECKING:
    from searchengine.config import IndexConfig
    from searchengine.encoders.registry import ModelRegistry
    from searchengine.store.store import Store

FILE_NAME = "calibration.json"
MIN_VECTORS = 200
SAMPLE = 4000
PROBES = [
    "a photo",
    "a picture of people",
    "an animal",
    "a landscape",
    "a city street",
    "food",
    "a document",
    "notes from a meeting",
    "instructions",
    "a letter",
    "a recipe",
    "a report",
    "music",
    "someone talking",
    "a noise",
    "birds singing",
    "a car",
    "water",
    "a loud sound",
    "a quiet room",
    "a person",
    "a building",
    "a screenshot",
    "a diagram",
    "text",
    "how to install",
    "an error message",
    "a list",
    "a table of numbers",
    "a story",
    "a question",
    "an answer",
    "a holiday",
    "work",
    "a family",
    "sports",
    "nature",
    "night",
    "a machine",
    "a child",
    "a cat",
    "a dog",
    "a phone call",
    "a song",
    "an interview",
    "a lecture",
    "the news",
    "a game",
    "a movie scene",
    "an old photograph",
]


def load(index_dir: Path) -> dict[str, dict[str, float | str | int]]:
    try:
        return json.loads((index_dir / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def ranges(index_dir: Path, models: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Fitted (lo, hi) per space, for the spaces whose stored fit matches their model."""
    from searchengine.search import COSINE_RANGE

    out = {}
    for space, fit in load(index_dir).items():
        if fit.get("model") == models.get(space) and space in COSINE_RANGE:
            family_lo, family_hi = COSINE_RANGE[space]
            lo = float(fit["lo"])
            out[space] = (lo, lo + family_hi - family_lo)
    return out


def fit_space(probes: np.ndarray, rows: np.ndarray) -> float:
    """The median cosine between generic probes and stored vectors."""
    return float(np.median(probes @ rows.T))


def refresh(store: Store, models: ModelRegistry, config: IndexConfig) -> None:
    """Refit the spaces whose size or model changed enough since the last fit."""
    fits = load(store.dir)
    changed = False
    for space in SPACES:
        count = len(store.cache(space))  # caught up by the sync before this
        model = config.model_key(space)
        old = fits.get(space)
        if count < MIN_VECTORS:
            changed |= fits.pop(space, None) is not None
            continue
        if old and old.get("model") == model and abs(count - int(old["vectors"])) < count / 5:
            continue
        try:
            encoder = models.encoder(space)
        except ModelUnavailable:
            continue
        rows = store.catalog.sample_vectors(space, SAMPLE)
        if rows.shape[1] != encoder.dim:
            continue
        lo = fit_space(encoder.embed_queries(PROBES), rows)
        fits[space] = {"model": model, "lo": lo, "vectors": int(count)}
        changed = True
    if changed:
        tmp = store.dir / (FILE_NAME + ".tmp")
        tmp.write_text(json.dumps(fits, indent=2), encoding="utf-8")
        os.replace(tmp, store.dir / FILE_NAME)
