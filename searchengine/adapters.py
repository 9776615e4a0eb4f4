"""Query adapters: a learned linear map applied to a space's query vectors (`searchengine tune`).

An adapter belongs to one space and to the model that made that space's vectors: its matrix
lives in `<index>/adapters/<space>-<digest>.npy`, and the catalog's `meta` row
`adapter:<space>` names the file, the model key and the model's content identity. A query
uses it only while both still match the index (a model change silently retires it; `status`
and `tune` say so). Torch-free: the query path imports numpy only. The matrix maps a query
row q to W q, then re-normalised; item vectors are never touched, so nothing re-embeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchengine.store.catalog import Catalog

ADAPTER_DIR = "adapters"
META_PREFIX = "adapter:"


@dataclass
class Adapter:
    """One space's query map, and what it was trained for."""

    space: str
    model: str
    identity: str | None
    matrix: np.ndarray
    info: dict[str, Any]

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """Query rows (n, d) mapped and L2-normalised again."""
        mapped = np.asarray(rows, np.float32) @ self.matrix.T
        norms = np.linalg.norm(mapped, axis=1, keepdims=True)
        return (mapped / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class AdaptedEncoder:
    """An encoder whose text queries pass through an adapter; items are embedded as before.
    Wraps the ONNX query encoder and the full model alike, so both query paths agree."""

    def __init__(self, base: Any, adapter: Adapter) -> None:
        self.base = base
        self.adapter = adapter
        self.space = base.space
        self.dim = base.dim

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self.adapter.apply(self.base.embed_queries(texts))

    def embed_items(self, payloads: list[Any]) -> np.ndarray:
        return self.base.embed_items(payloads)


def adapted(
    encoder_for: Callable[[str], Any], adapters: dict[str, Adapter]
) -> Callable[[str], Any]:
    """`encoder_for` with each space that has an adapter wrapped by it."""

    def pick(space: str) -> Any:
        enc = encoder_for(space)
        found = adapters.get(space)
        if found is None or found.matrix.shape != (enc.dim, enc.dim):
            return enc
        return AdaptedEncoder(enc, found)

    return pick


def _identity(catalog: Catalog, space: str, model: str) -> str | None:
    return catalog.model_identities(space).get(model)


def records(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Per space, the stored adapter record (file, model, identity, training figures)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in catalog.meta_values(META_PREFIX).items():
        try:
            rec = json.loads(value)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out[key[len(META_PREFIX) :]] = rec
    return out


def why_unused(rec: dict[str, Any], catalog: Catalog, space: str, model: str) -> str | None:
    """Why a stored adapter does not apply now (None when it does)."""
    if rec.get("model") != model:
        return f"trained for model {rec.get('model')!r}, the space now uses {model!r}"
    identity = _identity(catalog, space, model)
    if rec.get("identity") and identity and rec["identity"] != identity:
        return "trained for other weights under the same model name"
    return None


def load(
    index_dir: Path, catalog: Catalog, models: dict[str, str], cache: dict[str, Any] | None = None
) -> dict[str, Adapter]:
    """The adapters that apply to this index now (one catalog read; matrices memoised in
    `cache` by file name, so a long-lived reader loads each once)."""
    out: dict[str, Adapter] = {}
    for space, rec in records(catalog).items():
        model = models.get(space)
        if model is None or why_unused(rec, catalog, space, model) is not None:
            continue
        name = str(rec.get("file", ""))
        path = index_dir / ADAPTER_DIR / name
        matrix = cache.get(name) if cache is not None else None
        if matrix is None:
            try:
                matrix = np.load(path, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError):
                continue  # a missing or damaged file: queries go on without it
            if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
                continue
            if cache is not None:
                cache[name] = matrix
        out[space] = Adapter(space, model, rec.get("identity"), matrix, rec)
    return out


def save(
    index_dir: Path, catalog: Catalog, space: str, model: str, matrix: np.ndarray, info: dict
) -> Path:
    """Write the matrix (atomically, under a content-derived name), then point the catalog
    at it and remove the file it replaces: a kill leaves the old adapter or the new one."""
    folder = index_dir / ADAPTER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    matrix = np.ascontiguousarray(matrix, np.float32)
    digest = hashlib.sha256(matrix.tobytes()).hexdigest()[:16]
    name = f"{space}-{digest}.npy"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, matrix, allow_pickle=False)
        os.replace(tmp, folder / name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    old = records(catalog).get(space, {}).get("file")
    rec = {**info, "file": name, "model": model, "identity": _identity(catalog, space, model)}
    catalog.set_meta_value(META_PREFIX + space, json.dumps(rec, sort_keys=True))
    if old and old != name:
        (folder / str(old)).unlink(missing_ok=True)
    return folder / name


def remove(index_dir: Path, catalog: Catalog, space: str) -> bool:
    """Forget a space's adapter (catalog row first, then its file); False if it had none."""
    rec = records(catalog).get(space)
    if rec is None:
        return False
    catalog.set_meta_value(META_PREFIX + space, None)
    if rec.get("file"):
        (index_dir / ADAPTER_DIR / str(rec["file"])).unlink(missing_ok=True)
    return True
