"""The map's tables in the catalog: `map_fits` (per space: the model and method of the
stored layout and the reducer file beside the catalog) and `map_points` (per space and
file: the whole-file vector id it was placed from, and x, y). A point whose file is gone
goes with it (ON DELETE CASCADE); one whose file vector changed (a new id) is placed again."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import text

from searchengine.store.catalog import Catalog, _filters
from searchengine.store.schema import decode_vectors
from searchengine.types import Filters


@dataclass(frozen=True, slots=True)
class Fit:
    space: str
    model: str
    method: str
    fitted: int
    reducer: str
    """File name of the pickled reducer in the index's `maps/` folder."""
    created: float


def current_vectors(catalog: Catalog, space: str, model: str) -> dict[int, int]:
    """file id -> whole-file vector id, for the space's files made by `model`."""
    with catalog.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT file_id, id FROM file_vectors WHERE space = :s AND model = :m"),
            {"s": space, "m": model},
        ).all()
    return {int(f): int(v) for f, v in rows}


def read_vectors(catalog: Catalog, vector_ids: Sequence[int]) -> np.ndarray:
    """Whole-file vectors by id, in the order given."""
    ids = list(vector_ids)
    if not ids:
        return np.zeros((0, 0), np.float32)
    found: dict[int, bytes] = {}
    with catalog.engine.connect() as conn:
        for i in range(0, len(ids), 900):
            part = ids[i : i + 900]
            marks = ",".join(str(int(v)) for v in part)
            found.update(
                conn.execute(
                    text(f"SELECT id, vector FROM file_vectors WHERE id IN ({marks})")
                ).all()
            )
    return decode_vectors([found[v] for v in ids])


def fit_of(catalog: Catalog, space: str) -> Fit | None:
    with catalog.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT space, model, method, fitted, reducer, created FROM map_fits "
                "WHERE space = :s"
            ),
            {"s": space},
        ).first()
    return Fit(*row) if row else None


def stored_points(catalog: Catalog, space: str) -> dict[int, int]:
    """file id -> the vector id each stored point was placed from."""
    with catalog.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT file_id, vector_id FROM map_points WHERE space = :s"), {"s": space}
        ).all()
    return {int(f): int(v) for f, v in rows}


def save(
    catalog: Catalog,
    space: str,
    placed: dict[int, tuple[int, float, float]],
    drop: Sequence[int],
    fit: Fit | None = None,
) -> None:
    """One transaction: a new fit replaces every point of the space; otherwise `placed`
    (file id -> (vector id, x, y)) is upserted and `drop` removed."""
    with catalog.transaction() as conn:
        if fit is not None:
            conn.execute(text("DELETE FROM map_points WHERE space = :s"), {"s": space})
            conn.execute(
                text(
                    "INSERT OR REPLACE INTO map_fits(space, model, method, fitted, reducer, "
                    "created) VALUES (:space, :model, :method, :fitted, :reducer, :created)"
                ),
                {
                    "space": fit.space,
                    "model": fit.model,
                    "method": fit.method,
                    "fitted": fit.fitted,
                    "reducer": fit.reducer,
                    "created": fit.created or time.time(),
                },
            )
        ids = list(drop)
        for i in range(0, len(ids), 900):
            marks = ",".join(str(int(f)) for f in ids[i : i + 900])
            conn.execute(
                text(f"DELETE FROM map_points WHERE space = :s AND file_id IN ({marks})"),
                {"s": space},
            )
        if placed:
            conn.execute(
                text(
                    "INSERT OR REPLACE INTO map_points(space, file_id, vector_id, x, y) "
                    "VALUES (:s, :f, :v, :x, :y)"
                ),
                [
                    {"s": space, "f": f, "v": v, "x": float(x), "y": float(y)}
                    for f, (v, x, y) in placed.items()
                ],
            )


def shown(catalog: Catalog, space: str, filters: Filters) -> list[dict[str, Any]]:
    """The stored points of a space whose files pass the filters, with path and type."""
    sql = (
        "SELECT f.id, f.path, f.type, s.x, s.y FROM map_points s CROSS JOIN files f "
        "ON f.id = s.file_id WHERE s.space = :space"
    )
    sql, params = _filters(sql, {"space": space}, filters)
    with catalog.engine.connect() as conn:
        rows = conn.execute(text(sql + " ORDER BY f.id"), params).all()
    return [{"id": r[0], "path": r[1], "type": r[2], "x": r[3], "y": r[4]} for r in rows]


def file_texts(catalog: Catalog, file_ids: Sequence[int], limit: int = 2000) -> dict[int, str]:
    """Up to `limit` characters of each file's segment text (document chunks, transcript
    lines), in order: what its cluster's label words are drawn from, with its name."""
    out: dict[int, str] = {}
    ids = list(file_ids)
    with catalog.engine.connect() as conn:
        for i in range(0, len(ids), 900):
            marks = ",".join(str(int(f)) for f in ids[i : i + 900])
            rows = conn.execute(
                text(
                    f"SELECT file_id, text FROM segments WHERE file_id IN ({marks}) "
                    "AND text IS NOT NULL ORDER BY file_id, id"
                )
            ).all()
            for fid, chunk in rows:
                have = out.get(fid, "")
                if len(have) < limit:
                    out[fid] = (have + " " + chunk)[:limit] if have else chunk[:limit]
    return out
