"""The reducer: whole-file vectors -> 2-D points. PCA to at most 50 dimensions (cheap, and
it takes the noise out before UMAP's neighbour graph), then UMAP. A large space is fitted
on a sample and the rest placed with `transform`, which also places the files that a later
run finds new. Too few files for UMAP (it needs more points than neighbours) fall back to
PCA straight to 2-D; one file sits at the origin."""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PCA_DIMS = 50
NEIGHBOURS = 15
MIN_UMAP = 16
"""Fewer files than this are laid out by PCA alone (UMAP needs n_neighbors < n, and its
spectral start is unstable on a handful of points)."""
FIT_SAMPLE = 10_000
"""Files a layout is fitted on; the others are placed by `transform`."""


@dataclass
class Reducer:
    """A fitted layout: `method` is 'umap', 'pca' (few files) or 'point' (one file)."""

    method: str
    dim: int
    pca: Any = None
    anchors: np.ndarray | None = None
    """The fitted files in PCA space (float32) and, below, their raw 2-D positions."""
    anchor_xy: np.ndarray | None = None
    scale: tuple[np.ndarray, float] = field(default_factory=lambda: (np.zeros(2, np.float32), 1.0))
    """Centre and spread of the fitted points: coordinates are kept near [-1, 1]."""

    def transform(
        self, vectors: np.ndarray, batch: int = 20_000, *, scaled: bool = True
    ) -> np.ndarray:
        """2-D positions of new vectors in this layout (`scaled=False`: before the fit's
        scale is known)."""
        if len(vectors) == 0:
            return np.zeros((0, 2), np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of size {vectors.shape[1]}, layout fitted on {self.dim}")
        if self.method == "point":
            return np.zeros((len(vectors), 2), np.float32)
        out = []
        for i in range(0, len(vectors), batch):
            part = self.pca.transform(vectors[i : i + batch])
            if self.anchors is not None:
                part = self._interpolate(part.astype(np.float32))
            out.append(part[:, :2])
        raw = np.vstack(out)
        return self._scaled(raw) if scaled else raw

    def _interpolate(self, reduced: np.ndarray) -> np.ndarray:
        """Each row at the inverse-distance weighted mean of its nearest anchors."""
        from sklearn.neighbors import NearestNeighbors

        assert self.anchors is not None and self.anchor_xy is not None
        k = min(NEIGHBOURS, len(self.anchors))
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(self.anchors)
        dist, idx = nn.kneighbors(reduced)
        weights = 1.0 / np.maximum(dist, 1e-6) ** 2
        weights /= weights.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkd->nd", weights, self.anchor_xy[idx])

    def _scaled(self, raw: np.ndarray) -> np.ndarray:
        centre, spread = self.scale
        return ((raw - centre) / spread).astype(np.float32)

    def save(self, path: Path) -> None:
        """Written whole or not at all (a temporary file renamed over the target)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    @staticmethod
    def load(path: Path) -> Reducer | None:
        """The saved layout, or None when it is missing or unreadable (then: refit). The file
        is the index's own, written by `save`: as trusted as the catalog beside it."""
        try:
            with open(path, "rb") as fh:
                found = pickle.load(fh)  # noqa: S301 - the index's own file
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            return None
        return found if isinstance(found, Reducer) else None


def fit(
    vectors: np.ndarray, *, sample: int = FIT_SAMPLE, seed: int = 0
) -> tuple[Reducer, np.ndarray]:
    """Fit a layout on (a sample of) `vectors`; returns it and the positions of all rows."""
    n, dim = vectors.shape
    if n == 0:
        raise ValueError("nothing to lay out")
    if n == 1:
        return Reducer("point", dim), np.zeros((1, 2), np.float32)
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(n, size=sample, replace=False)) if n > sample else np.arange(n)
    train = vectors[picked]
    if len(train) < MIN_UMAP:
        pca = PCA(n_components=min(2, len(train) - 1, dim), random_state=seed).fit(train)
        reducer = Reducer("pca", dim, pca=_padded(pca))
    else:
        pca = PCA(n_components=min(PCA_DIMS, len(train) - 1, dim), random_state=seed)
        reduced = pca.fit_transform(train)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            embedded = _umap(len(train), seed).fit_transform(reduced)
        reducer = Reducer(
            "umap",
            dim,
            pca=pca,
            anchors=reduced.astype(np.float32),
            anchor_xy=np.asarray(embedded, np.float32),
        )
    raw = np.zeros((n, 2), np.float32)
    if reducer.anchor_xy is not None:
        raw[picked] = reducer.anchor_xy
    else:
        raw[picked] = reducer.transform(train, scaled=False)
    rest = np.setdiff1d(np.arange(n), picked)
    if len(rest):
        raw[rest] = reducer.transform(vectors[rest], scaled=False)
    centre = raw.mean(axis=0)
    spread = float(np.abs(raw - centre).max()) or 1.0
    reducer.scale = (centre.astype(np.float32), spread)
    return reducer, reducer._scaled(raw)


class _padded:
    """A PCA of fewer than 2 components (two files) padded with a zero column."""

    def __init__(self, pca: Any) -> None:
        self.pca = pca

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = self.pca.transform(x)
        if out.shape[1] < 2:
            out = np.hstack([out, np.zeros((len(out), 2 - out.shape[1]), out.dtype)])
        return out


def _umap(n: int, seed: int) -> Any:
    import umap  # numba: seconds to import, ~20 s to compile on first fit; never on search

    return umap.UMAP(
        n_neighbors=min(NEIGHBOURS, n - 1),
        n_components=2,
        min_dist=0.1,
        metric="euclidean",
        random_state=seed,
        low_memory=True,
    )
