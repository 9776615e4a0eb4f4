"""Duplicate files in an index: exact copies (same content hash) and near duplicates (files
whose mean vectors in a space are at least `threshold` cosine-similar).

Exact groups come from the catalog's `sha` column, whatever a file's state. Near groups are
made per space (text, clip, clap) from each indexed file's mean vector, read in bulk (one
streamed query per space), searched with FAISS (exact k-NN over the file means) and joined
with union-find. Exact copies share one representative in near groups, so a near group always
holds at least two files whose contents differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import faiss
import numpy as np
from sqlalchemy import select

from searchengine.encoders.registry import SPACES
from searchengine.errors import UserError
from searchengine.store.catalog import Catalog, FileRecord, file_vectors, files
from searchengine.store.schema import decode_vectors

if TYPE_CHECKING:
    from searchengine.engine import Engine

__all__ = [
    "DuplicateFile",
    "DuplicateGroup",
    "find_duplicates",
    "human_size",
    "render_text",
]

NEIGHBOURS = 16
"""Nearest neighbours fetched per file; union-find joins larger clusters through them."""

_QUERY_BATCH = 4096  # file means searched at once
_ROW_BATCH = 8192  # segment rows read from SQLite at once
_EPS = 1e-6  # float32 slack, so a cosine of 0.9499999 still passes a 0.95 threshold


@dataclass(slots=True)
class DuplicateFile:
    path: str
    size: int
    type: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "type": self.type}


@dataclass(slots=True)
class DuplicateGroup:
    """Files that are copies (`exact`) or alike in one space (`near`).

    `similarity` is the smallest pairwise cosine inside a near group (None for exact groups);
    `wasted_bytes` is what keeping only the largest file would free.
    """

    kind: Literal["exact", "near"]
    space: str | None
    similarity: float | None
    files: list[DuplicateFile] = field(default_factory=list)
    wasted_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "space": self.space,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "count": len(self.files),
            "total_bytes": self.total_bytes,
            "wasted_bytes": self.wasted_bytes,
            "files": [f.to_json() for f in self.files],
        }


def find_duplicates(
    engine: Engine,
    *,
    near: bool = True,
    threshold: float = 0.95,
    types: Sequence[str] | None = None,
) -> list[DuplicateGroup]:
    """Exact groups (largest wasted bytes first), then near groups per space (most similar
    first). `types` keeps only files of those types; `near=False` skips the vector search."""
    from searchengine.engine import check_types

    if not 0.0 < threshold <= 1.0:
        raise UserError(f"--threshold must be in (0, 1], not {threshold:g}")
    wanted = check_types(types)
    records = [r for r in engine.catalog.all_files() if wanted is None or r.type in wanted]
    exact = _exact_groups(records)
    groups = [g for g, _ in exact]
    if near:
        by_id = {r.id: r for r in records}
        sha_of = {r.id: r.sha for r in records if r.sha and r.size > 0}
        for space in SPACES:
            groups.extend(_near_groups(engine.catalog, space, threshold, wanted, by_id, sha_of))
    exact_part = [g for g in groups if g.kind == "exact"]
    near_part = sorted(
        (g for g in groups if g.kind == "near"),
        key=lambda g: (-(g.similarity or 0.0), -g.wasted_bytes, g.files[0].path),
    )
    return exact_part + near_part


# ---- exact -----------------------------------------------------------------------------


def _exact_groups(records: list[FileRecord]) -> list[tuple[DuplicateGroup, str]]:
    """Files sharing a content hash. Empty files all hash alike and waste nothing: left out."""
    by_sha: dict[str, list[FileRecord]] = {}
    for r in records:
        if r.sha and r.size > 0:
            by_sha.setdefault(r.sha, []).append(r)
    out = []
    for sha, members in by_sha.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda r: r.path)
        out.append((_group("exact", None, None, members), sha))
    out.sort(key=lambda gs: (-gs[0].wasted_bytes, gs[0].files[0].path))
    return out


def _group(
    kind: Literal["exact", "near"],
    space: str | None,
    similarity: float | None,
    members: list[FileRecord],
) -> DuplicateGroup:
    sizes = [r.size for r in members]
    return DuplicateGroup(
        kind=kind,
        space=space,
        similarity=similarity,
        files=[DuplicateFile(path=r.path, size=r.size, type=r.type) for r in members],
        wasted_bytes=sum(sizes) - max(sizes),
    )


# ---- near ------------------------------------------------------------------------------


def _near_groups(
    catalog: Catalog,
    space: str,
    threshold: float,
    types: Sequence[str] | None,
    by_id: dict[int, FileRecord],
    sha_of: dict[int, str],
) -> list[DuplicateGroup]:
    file_ids, means = file_means(catalog, space, types)
    if len(file_ids) < 2:
        return []
    # Exact copies hold the same vectors: keep one representative (smallest path) per hash.
    keep: dict[Any, int] = {}
    for row, fid in enumerate(file_ids.tolist()):
        rec = by_id.get(fid)
        if rec is None:
            continue
        key = sha_of.get(fid) or ("id", fid)
        best = keep.get(key)
        if best is None or rec.path < by_id[int(file_ids[best])].path:
            keep[key] = row
    rows = np.fromiter(sorted(keep.values()), dtype=np.int64)
    if len(rows) < 2:
        return []
    file_ids, means = file_ids[rows], np.ascontiguousarray(means[rows])
    components = _linked(means, threshold)
    out = []
    for members in components:
        sim = _min_pairwise(means[members])
        recs = sorted((by_id[int(file_ids[m])] for m in members), key=lambda r: r.path)
        out.append(_group("near", space, sim, recs))
    return out


def file_means(
    catalog: Catalog, space: str, types: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(file ids, L2-normalised whole-file vectors) of every indexed file in `space`, read
    from the catalog's whole-file vectors in one streamed query. Only vectors of the space's
    dominant model count (a half-finished model change must not mix spaces or sizes)."""
    stored = catalog.space_models().get(space)
    if stored is None:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    model = stored[0]
    q = (
        select(file_vectors.c.file_id, file_vectors.c.vector)
        .join(files, files.c.id == file_vectors.c.file_id)
        .where(
            file_vectors.c.space == space,
            file_vectors.c.model.is_(None) if model is None else file_vectors.c.model == model,
            files.c.state == "indexed",
        )
        .order_by(file_vectors.c.file_id)
    )
    if types:
        q = q.where(files.c.type.in_(list(types)))
    ids: list[int] = []
    blobs: list[bytes] = []
    with catalog.engine.connect() as conn:
        result = conn.execute(q)
        while batch := result.fetchmany(_ROW_BATCH):
            for fid, blob in batch:
                if not blobs or len(blob) == len(blobs[0]):
                    ids.append(int(fid))
                    blobs.append(blob)
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.asarray(ids, np.int64), decode_vectors(blobs)


def _linked(means: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Groups (row indices, >= 2 each) joined by pairs with cosine >= threshold."""
    n, dim = means.shape
    index = faiss.IndexFlatIP(dim)
    index.add(means)
    k = min(n, NEIGHBOURS + 1)  # +1: a file finds itself
    parent = list(range(n))

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    for start in range(0, n, _QUERY_BATCH):
        scores, nbrs = index.search(means[start : start + _QUERY_BATCH], k)
        src = np.arange(start, start + len(nbrs))[:, None]
        hit = (scores >= threshold - _EPS) & (nbrs >= 0) & (nbrs != src)
        for a, b in zip(np.broadcast_to(src, nbrs.shape)[hit], nbrs[hit], strict=True):
            ra, rb = find(int(a)), find(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    order = np.argsort(roots, kind="stable")
    bounds = np.flatnonzero(np.r_[True, roots[order][1:] != roots[order][:-1], True])
    return [
        order[bounds[i] : bounds[i + 1]]
        for i in range(len(bounds) - 1)
        if bounds[i + 1] - bounds[i] >= 2
    ]


def _min_pairwise(vectors: np.ndarray, block: int = 2048) -> float:
    """Smallest cosine between two different rows, in blocks (groups can be large)."""
    lowest = 1.0
    for s in range(0, len(vectors), block):
        sims = vectors[s : s + block] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, rows + s] = np.inf  # not a row with itself
        lowest = min(lowest, float(sims.min()))
    return float(np.clip(lowest, -1.0, 1.0))


# ---- presentation ----------------------------------------------------------------------


def human_size(n: int) -> str:
    """Bytes as people read them: 512 B, 1.2 kB, 3.4 MB (powers of 1000)."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000.0
        if value < 999.95 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def render_text(groups: Sequence[DuplicateGroup]) -> str:
    """One header line per group, its files with sizes, then a summary line."""
    if not groups:
        return "no duplicates found"
    lines: list[str] = []
    for g in groups:
        if g.kind == "exact":
            head = "exact copies"
        else:
            head = f"near duplicates in {g.space} (similarity {g.similarity:.3f})"
        lines.append(f"{head}: {len(g.files)} files, {human_size(g.wasted_bytes)} wasted")
        for f in g.files:
            lines.append(f"  {human_size(f.size):>9}  {f.path}")
        lines.append("")
    n_exact = sum(g.kind == "exact" for g in groups)
    n_near = len(groups) - n_exact
    wasted_exact = sum(g.wasted_bytes for g in groups if g.kind == "exact")
    lines.append(
        f"{len(groups)} groups ({n_exact} exact, {n_near} near); "
        f"{human_size(wasted_exact)} in exact copies could be freed"
    )
    return "\n".join(lines)
