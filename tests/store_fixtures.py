"""Catalogs written directly through the Store (no model): synthetic clustered vectors, so
store-level tests can reach the sizes where the approximate index takes over."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from searchengine.config import IndexConfig
from searchengine.store.catalog import NewFile
from searchengine.store.store import Store
from searchengine.types import Segment

WORDS = "harbour violin glacier bread tax chess bee train solar pottery".split()


def clustered(n: int, dim: int, seed: int, centres: int = 40) -> np.ndarray:
    """Normalised rows around random centres (real embeddings cluster; uniform noise does
    not, and would make any approximate index look bad)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)).astype(np.float32)
    rows = c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def write_files(
    store: Store,
    root: Path,
    n_files: int,
    per_file: int,
    *,
    dim: int = 384,
    seed: int = 0,
    file_type: str = "text",
    space: str = "text",
    start: int = 0,
) -> dict[str, np.ndarray]:
    """n_files fake files (`root/f00012.txt`, two folders) with per_file segments each;
    returns each path's segment vectors."""
    vecs = clustered(n_files * per_file, dim, seed)
    models = {s: IndexConfig().model_key(s) for s in ("text", "clip", "clap")}
    out: dict[str, np.ndarray] = {}
    with store.catalog.transaction() as conn:
        for i in range(start, start + n_files):
            folder = "even" if i % 2 == 0 else "odd"
            path = os.path.join(str(root), folder, f"f{i:05d}.txt")
            rows = vecs[(i - start) * per_file : (i - start + 1) * per_file]
            segs = [
                Segment(
                    space=space,
                    kind="chunk" if space == "text" else "image",
                    start=float(j * 100),
                    end=float(j * 100 + 90),
                    text=f"{WORDS[(i + j) % len(WORDS)]} note {i} part {j}"
                    if space == "text"
                    else None,
                )
                for j in range(per_file)
            ]
            record = NewFile(
                path_key=os.fsencode(path),
                path=path,
                type=file_type,
                size=100 + i,
                mtime_ns=1_700_000_000_000_000_000 + i,
                sha=f"{i:064x}",
                state="indexed",
                meta={},
            )
            store.catalog.write_file(conn, record, segs, list(rows), models)
            out[path] = rows
    return out
