"""Clustered synthetic vectors for the index tests and scripts/bench_ann.py.

Uniform noise is the worst case for any approximate index and unlike real embeddings, which
gather around topics. Here: a mixture of Gaussians around random unit centres, with uneven
cluster sizes and spreads, L2-normalised. `noise` is the Gaussian's total norm relative to its
(unit) centre: 1.0 puts points at cosine ~0.7 from their centre, ~0.5 from each other.
With `decay` 0 the Gaussians are isotropic (neighbours nearly equidistant: the hard case);
with decay > 0 their variance falls off as a power law over a random basis, as in real
embeddings, whose spectra are dominated by a few dozen directions.
"""

from __future__ import annotations

import numpy as np


def _normalise(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def clustered(
    n: int,
    dim: int,
    *,
    clusters: int | None = None,
    noise: float = 1.0,
    decay: float = 0.0,
    seed: int = 0,
    chunk: int = 100_000,
) -> np.ndarray:
    """(n, dim) float32 unit rows drawn from the same mixture for a given (dim, clusters, seed)."""
    rng = np.random.default_rng(seed)
    clusters = clusters or max(8, int(np.sqrt(n)))
    centres = _normalise(rng.standard_normal((clusters, dim)).astype(np.float32))
    weights = rng.pareto(1.5, clusters) + 1.0
    weights /= weights.sum()
    spread = (rng.uniform(0.6, 1.4, clusters) * noise / np.sqrt(dim)).astype(np.float32)
    scales = (np.arange(1, dim + 1, dtype=np.float32) ** -decay).astype(np.float32)
    scales *= np.sqrt(dim / np.sum(scales**2))  # same total variance as isotropic
    basis = None
    if decay:
        basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        labels = rng.choice(clusters, stop - start, p=weights)
        rows = rng.standard_normal((stop - start, dim), dtype=np.float32)
        if basis is not None:
            rows = (rows * scales) @ basis
        rows *= spread[labels, None]
        rows += centres[labels]
        out[start:stop] = _normalise(rows)
    return out
