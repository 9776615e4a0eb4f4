"""One map run: bring the space's stored layout up to date, then read the points to show.

A layout is refitted when asked, when there is none (or its reducer file is gone), when
the space's model changed, or when it was fitted on so few files that the space has since
grown past twice that (a PCA fallback of 5 files says little about 5,000). Otherwise only
the files without a point, or whose whole-file vector changed, are placed (`transform`),
and the points of files gone from the space are dropped."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from searchengine.atlas import labels, points
from searchengine.atlas.layout import FIT_SAMPLE, Reducer, fit
from searchengine.errors import UserError
from searchengine.store.catalog import Catalog
from searchengine.types import Filters

MAPS = "maps"
"""Folder of the index holding the fitted reducers."""


@dataclass(slots=True)
class MapPoint:
    id: int
    path: str
    type: str
    x: float
    y: float
    cluster: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "type": self.type,
            "x": round(self.x, 5),
            "y": round(self.y, 5),
            "cluster": self.cluster,
        }


@dataclass(slots=True)
class MapResult:
    """The points shown (after filters), their clusters' labels, and what this run did:
    `fitted` (a new layout, on how many files), `placed` and `dropped` points, `unplaced`
    files of the space that have no point yet (a read-only map cannot place them)."""

    space: str
    method: str
    points: list[MapPoint]
    labels: dict[int, list[str]] = field(default_factory=dict)
    fitted: int = 0
    placed: int = 0
    dropped: int = 0
    unplaced: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        did = []
        if self.fitted:
            did.append(f"laid out {self.fitted} files ({self.method})")
        if self.placed:
            did.append(f"placed {self.placed} new")
        if self.dropped:
            did.append(f"dropped {self.dropped} removed")
        if self.unplaced:
            did.append(f"{self.unplaced} not placed yet (run 'searchengine map' on the index)")
        groups = len([c for c in self.labels if c != labels.OTHER])
        head = f"{self.space} map: {len(self.points)} files, {groups} clusters"
        return head + (f"; {', '.join(did)}" if did else "") + f" in {self.seconds:.1f} s"

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "method": self.method,
            "points": [p.to_json() for p in self.points],
            "clusters": [
                {"id": c, "label": " · ".join(w) if c != labels.OTHER else "other", "words": w}
                for c, w in sorted(self.labels.items(), key=lambda kv: (kv[0] < 0, kv[0]))
            ],
            "fitted": self.fitted,
            "placed": self.placed,
            "dropped": self.dropped,
            "unplaced": self.unplaced,
        }


def build_map(
    catalog: Catalog,
    index_dir: Path,
    space: str,
    model: str,
    filters: Filters,
    *,
    refit: bool = False,
    sample: int = FIT_SAMPLE,
) -> MapResult:
    """Update the stored layout of `space` (the caller holds the writer lock), then read
    the points passing `filters`, clustered and labelled."""
    started = time.perf_counter()
    current = points.current_vectors(catalog, space, model)
    if not current:
        raise UserError(_empty(catalog, space))
    fit_row = points.fit_of(catalog, space)
    reducer = Reducer.load(index_dir / MAPS / fit_row.reducer) if fit_row else None
    stored = points.stored_points(catalog, space) if fit_row else {}
    if reducer is not None and reducer.method != "point" and fit_row is not None:
        grown = fit_row.fitted < sample and len(current) > 2 * fit_row.fitted
    else:
        grown = len(current) > 1
    new_fit = refit or reducer is None or fit_row is None or fit_row.model != model or grown
    result = MapResult(space, "", [])
    if new_fit:
        files = sorted(current)
        vectors = points.read_vectors(catalog, [current[f] for f in files])
        reducer, xy = fit(vectors, sample=sample)
        name = f"{space}-{uuid.uuid4().hex[:12]}.pkl"
        reducer.save(index_dir / MAPS / name)
        row = points.Fit(space, model, reducer.method, min(len(files), sample), name, time.time())
        placed = {f: (current[f], x, y) for f, (x, y) in zip(files, xy.tolist(), strict=True)}
        points.save(catalog, space, placed, [], fit=row)
        if fit_row is not None and fit_row.reducer != name:
            (index_dir / MAPS / fit_row.reducer).unlink(missing_ok=True)
        result.fitted = row.fitted
    else:
        assert reducer is not None
        todo = sorted(f for f, v in current.items() if stored.get(f) != v)
        gone = [f for f in stored if f not in current]
        xy = reducer.transform(points.read_vectors(catalog, [current[f] for f in todo]))
        placed = {f: (current[f], x, y) for f, (x, y) in zip(todo, xy.tolist(), strict=True)}
        points.save(catalog, space, placed, gone)
        result.placed, result.dropped = len(placed), len(gone)
    result.method = reducer.method
    _fill(catalog, result, filters)
    result.seconds = time.perf_counter() - started
    return result


def read_map(catalog: Catalog, space: str, model: str, filters: Filters) -> MapResult:
    """The stored layout as it is (a read-only index, the server): nothing is fitted or
    placed; files without a point yet are counted in `unplaced`."""
    started = time.perf_counter()
    try:
        fit_row = points.fit_of(catalog, space)
    except OperationalError:  # a catalog from before the map tables, opened read-only
        fit_row = None
    if fit_row is None:
        current = points.current_vectors(catalog, space, model)
        if not current:
            raise UserError(_empty(catalog, space))
        raise UserError(f"no {space} map yet: run 'searchengine map --space {space}' first")
    result = MapResult(space, fit_row.method, [])
    _fill(catalog, result, filters)
    current = points.current_vectors(catalog, space, model)
    stored = points.stored_points(catalog, space)
    result.unplaced = sum(1 for f, v in current.items() if stored.get(f) != v)
    result.seconds = time.perf_counter() - started
    return result


def _fill(catalog: Catalog, result: MapResult, filters: Filters) -> None:
    rows = points.shown(catalog, result.space, filters)
    if not rows:
        raise UserError(f"no file of the {result.space} map passes these filters")
    xy = np.array([[r["x"], r["y"]] for r in rows], np.float32)
    ids = labels.clusters(xy)
    texts = points.file_texts(catalog, [r["id"] for r in rows])
    docs = [labels.words_of(r["path"], texts.get(r["id"])) for r in rows]
    result.labels = labels.label(ids, docs)
    result.points = [
        MapPoint(r["id"], r["path"], r["type"], r["x"], r["y"], int(c))
        for r, c in zip(rows, ids.tolist(), strict=True)
    ]


def _empty(catalog: Catalog, space: str) -> str:
    """Why a space has nothing to map: no files of its kinds, or files waiting for a model."""
    waiting = sum(1 for spaces in catalog.pending_waiting().values() if space in spaces)
    if waiting:
        return (
            f"the {space} space has no vectors yet: "
            f"{'1 file waits' if waiting == 1 else f'{waiting} files wait'} for its model "
            "('searchengine status' says how to provide it)"
        )
    return f"the {space} space is empty: no indexed file has {space} vectors to map"


TYPE_SPACE = {"image": "clip", "video": "clip", "audio": "clap", "text": "text"}
MAP_SPACES = ("clip", "clap", "text")


def choose_space(catalog: Catalog, space: str | None, types: list[str] | None) -> str:
    """The space asked for; else the one the types live in; else the one with most files."""
    if space is not None:
        if space not in MAP_SPACES:
            raise UserError(f"--space wants one of {', '.join(MAP_SPACES)}, not '{space}'")
        return space
    wanted = {TYPE_SPACE[t] for t in types or [] if t in TYPE_SPACE}
    if len(wanted) == 1:
        return wanted.pop()
    with catalog.engine.connect() as conn:
        rows = dict(
            conn.execute(text("SELECT space, count(*) FROM file_vectors GROUP BY space")).all()
        )
    candidates = [s for s in MAP_SPACES if not wanted or s in wanted]
    return max(candidates, key=lambda s: (rows.get(s, 0), -MAP_SPACES.index(s)))
