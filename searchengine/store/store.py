"""The Store: the catalog (truth), each space's vector caches kept in step with it, and the
calibration. The indexer and the ranker receive a Store; neither reaches into Engine.

A cache is one FAISS index per space and level (`segment`: passages, moments, images;
`file`: whole-file vectors), saved with the catalog state it reflects (`max_id`, the
newest id it holds, and `tomb_seq`, the newest tombstone it applied). Catching up costs
two indexed range queries, so a long-lived reader checks before every query and sees what
another process's `index` committed without reopening. A cache file is replaced whole
(temp file + rename); a reader that sees a new file loads it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from searchengine.errors import UserError
from searchengine.store import vectors as ann
from searchengine.store.catalog import Catalog, OutdatedFormat
from searchengine.store.schema import decode_vectors
from searchengine.store.vectors import ondisk
from searchengine.types import Filters

LEVELS = ("segment", "file")
CATCH_UP_ROWS = 20000
SHARD_ROWS = 50_000
"""Vectors per shard of an on-disk build: one shard's codes and rows in memory at a time."""
EXACT_FILTER_LIMIT = 20000
"""A filter passing at most this many vectors is searched exactly over just those."""


def faiss_threads(n: int) -> None:
    """One query is one short scan: FAISS's OpenMP threads only spin and wait for each other
    there (57 ms instead of 1 on a busy 2-core machine), so searches run on one thread and
    builds (training, bulk adds) on every core given."""
    import faiss

    faiss.omp_set_num_threads(n)


def build_threads() -> int:
    return int(os.environ.get("SEARCHENGINE_THREADS", "0")) or (os.cpu_count() or 1)


def vector_memory() -> int:
    """Bytes of RAM one space's vector codes may take before they move to disk (ondisk.py):
    SEARCHENGINE_VECTOR_MEMORY ("6G", "500M", "1.5GB" or bytes; 0 puts every space large
    enough to train an IVF on disk), else a quarter of the machine's RAM."""
    value = os.environ.get("SEARCHENGINE_VECTOR_MEMORY", "").strip()
    if value:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", value, re.IGNORECASE)
        if m is None:
            raise UserError(
                f"SEARCHENGINE_VECTOR_MEMORY wants a size such as 6G, 500M or a number of "
                f"bytes, not '{value}'"
            )
        scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
        return int(float(m.group(1)) * scale[m.group(2).lower()])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _on_ray() -> bool:
    """Whether this process is a Ray driver (index --cluster): shards are then filled there."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def exact_below() -> int:
    """Spaces smaller than this are searched exactly (SEARCHENGINE_EXACT_BELOW overrides,
    which is how tests force the approximate path)."""
    value = os.environ.get("SEARCHENGINE_EXACT_BELOW")
    return int(value) if value else ann.DEFAULT_EXACT_BELOW


class VectorCache:
    """One space's FAISS cache at one level."""

    def __init__(self, folder: Path, space: str, level: str, catalog: Catalog) -> None:
        self.path = folder / f"{space}.{level}.faiss"
        self.space = space
        self.level = level
        self.catalog = catalog
        self.index: ann.VectorIndex | None = None
        self.state: dict[str, Any] = {"max_id": 0, "tomb_seq": 0}
        self.signature: tuple[int, int, int] | None = None
        self.seen: tuple[Any, ...] | None = None  # (catalog, file) signatures at last refresh
        self.dirty = False

    def __len__(self) -> int:
        return 0 if self.index is None else len(self.index)

    @property
    def dim(self) -> int | None:
        return None if self.index is None else self.index.dim

    def ids(self) -> np.ndarray:
        """Every id the cache holds (for checks; queries never list them)."""
        return np.zeros(0, np.int64) if self.index is None else self.index.ids()

    def _file_signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        for _ in range(3):  # a writer replaced the file (and its on-disk base) as we read it
            before = self._file_signature()
            loaded = ann.load(self.path)
            if loaded is not None or self._file_signature() == before:
                break
        self.signature = self._file_signature()
        if loaded is None:
            self.index, self.state = None, {"max_id": 0, "tomb_seq": 0}
        else:
            self.index, self.state = loaded
        self.dirty = False

    def refresh(self) -> None:
        """Load the saved file if it is new to us, then apply what the catalog committed
        since: vectors with larger ids, and tombstones. A new file is loaded even over
        vectors caught up here and not saved (they come from the catalog again): a
        long-lived reader thus moves to a rebuilt index, and lets go of a replaced on-disk
        base, instead of growing its own copy."""
        if (
            self.index is None
            and self.signature is None
            or self._file_signature() != self.signature
        ):
            self._load()
        pruned = self.catalog.pruned_through()
        if pruned > int(self.state["tomb_seq"]):
            # tombstones we have not applied were dropped: the saved file is newer than us
            self._load()
            if pruned > int(self.state["tomb_seq"]):
                self.index, self.state = None, {"max_id": 0, "tomb_seq": pruned}
        seq, gone = self.catalog.tombstones_after(
            self.space, self.level, int(self.state["tomb_seq"])
        )
        if len(gone) and self.index is not None:
            self.index.remove(gone)
            self.dirty = True
        self.state["tomb_seq"] = seq
        while True:
            ids, blobs = self.catalog.vectors_after(
                self.space, int(self.state["max_id"]), CATCH_UP_ROWS, self.level
            )
            if not len(ids):
                break
            self._add(ids, blobs)
            self.state["max_id"] = int(ids[-1])
            if len(ids) < CATCH_UP_ROWS:
                break

    def _add(self, ids: np.ndarray, blobs: list[bytes]) -> None:
        sizes = np.fromiter((len(b) for b in blobs), np.int64, len(blobs))
        if self.index is None:
            dim = int(sizes[-1]) // 2  # the newest vectors decide a new cache's size
            self.index = ann.build(ann.choose(0, dim, exact_below=exact_below()), dim)
        keep = sizes == 2 * self.index.dim  # a half-done model switch: other sizes wait
        if not keep.any():
            return
        rows = decode_vectors([b for b, k in zip(blobs, keep, strict=True) if k])
        self.index.add(ids[keep], rows)
        self.dirty = True

    def rebuild_if_needed(self) -> bool:
        """Writer side: move to the index type the space's size calls for (exact below the
        threshold, IVF above; retrained as it grows; on disk past the RAM budget; rebuilt
        when the model's vector size changed). Built beside the old one, which keeps
        answering until the new file replaces it."""
        dim = self.catalog.newest_dim(self.space, self.level)
        if self.index is not None and self.index.dim == dim:
            n = len(self.index)  # caught up: it holds every vector of this size
        else:
            n = self.catalog.count_vectors(self.space, self.level)
        if n == 0 or dim is None:
            return False
        ram = vector_memory()
        if self.index is not None and self.index.dim == dim:
            trained_on = int(self.state.get("trained_on", len(self.index)))
            stale = isinstance(self.index, ondisk.OnDiskIVFIndex) and self.index.stale()
            if not stale and not ann.needs_rebuild(
                self.index.spec, trained_on, n, exact_below=exact_below(), ram=ram
            ):
                return False
        spec = ann.place(n, dim, exact_below=exact_below(), ram=ram)
        faiss_threads(build_threads())
        state: dict[str, Any] = {"max_id": 0, "tomb_seq": self.catalog.tomb_seq(), "trained_on": n}
        if spec.kind == ondisk.OnDiskIVFIndex.kind:
            index: ann.VectorIndex = self._build_on_disk(spec, dim, state)
        else:
            index = ann.build(spec, dim)
            if spec.kind != "flat":
                sample = self.catalog.sample_vectors(self.space, spec.train_size, level=self.level)
                index.train(sample)
            for ids, rows in self._pages(dim, state):
                index.add(ids, rows)
        faiss_threads(1)
        self.index, self.state, self.dirty = index, state, True
        self.refresh()  # tombstones made while building
        return True

    def _pages(
        self, dim: int, state: dict[str, Any], rows: int = CATCH_UP_ROWS
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The space's vectors of size `dim`, in id order, `rows` at a time (fewer where
        vectors of another size are skipped); state["max_id"] follows."""
        while True:
            ids, blobs = self.catalog.vectors_after(self.space, state["max_id"], rows, self.level)
            if not len(ids):
                return
            state["max_id"] = int(ids[-1])
            keep = np.fromiter((len(b) == 2 * dim for b in blobs), bool, len(blobs))
            if keep.any():
                yield ids[keep], decode_vectors([b for b, k in zip(blobs, keep, strict=True) if k])

    def _build_on_disk(
        self, spec: ann.IndexSpec, dim: int, state: dict[str, Any]
    ) -> ondisk.OnDiskIVFIndex:
        """A new base folder beside the cache file, filled in shards (on the Ray cluster when
        this process is connected to one: `index --cluster`); the old base stays until the
        new cache file names the new one (Store.sync removes it then)."""
        folder = self.path.with_name(f"{self.path.stem}.ondisk-{time.time_ns()}")
        sample = self.catalog.sample_vectors(self.space, spec.train_size, level=self.level)
        shards = partial(self._pages, dim, state, SHARD_ROWS)  # read from the catalog as built
        ondisk.build(folder, spec, sample, shards, parallel=_on_ray())
        return ondisk.OnDiskIVFIndex.open(folder, base_max_id=int(state["max_id"]))

    def bases(self) -> list[Path]:
        """This cache's on-disk base folders, the one in use included."""
        return sorted(self.path.parent.glob(f"{self.path.stem}.ondisk-*"))

    def drop_old_bases(self) -> None:
        """Base folders no saved cache file names: replaced ones, or builds cut short. A
        reader still searching a removed one keeps its mapping until it reloads."""
        keep = self.index.base_dir.name if isinstance(self.index, ondisk.OnDiskIVFIndex) else ""
        if self.dirty:
            return  # the saved file may still name the old base
        for folder in self.bases():
            if folder.name != keep:
                shutil.rmtree(folder, ignore_errors=True)

    def save(self) -> None:
        if not self.dirty or self.index is None:
            return
        self.index.save(self.path, dict(self.state))  # crash point "vectors-written" inside
        self.signature = self._file_signature()
        self.dirty = False

    def search(
        self, query: np.ndarray, k: int, allowed: ann.Allowed | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of up to k nearest vectors; approximate scores are re-scored
        exactly from the stored vectors by the caller (Store.search)."""
        if self.index is None or len(self.index) == 0 or query.shape[-1] != self.index.dim:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores, ids = self.index.search(query.reshape(1, -1).astype(np.float32), k, allowed)
        good = ids[0] >= 0
        return ids[0][good], scores[0][good]


class Store:
    """An index folder's data: catalog.db, the vector caches and calibration.json."""

    def __init__(self, folder: Path, *, readonly: bool = False) -> None:
        self.dir = folder
        self.readonly = readonly
        faiss_threads(1)
        if not readonly:
            folder.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(folder / "catalog.db", readonly=readonly)
        self._caches: dict[tuple[str, str], VectorCache] = {}
        self._calibration: tuple[Any, dict[str, tuple[float, float]]] | None = None
        self._mixed: dict[tuple[str, str], tuple[Any, bool]] = {}

    def close(self) -> None:
        self.catalog.close()

    def cache(self, space: str, level: str = "segment") -> VectorCache:
        """A space's cache, caught up with the catalog (cheap when nothing changed)."""
        key = (space, level)
        vc = self._caches.get(key)
        if vc is None:
            vc = self._caches[key] = VectorCache(self.dir, space, level, self.catalog)
        seen = (self._catalog_signature(), vc._file_signature())
        if vc.dirty or vc.seen != seen:  # a commit or a new cache file since we looked
            vc.refresh()
            vc.seen = seen
        return vc

    def index_kind(self, space: str, level: str = "segment") -> str | None:
        """How the space's saved cache searches ("exact", "IVF...,SQ4", "... on disk"),
        from the file's header alone; None before the first sync."""
        from searchengine.store.vectors import storage

        header = storage.peek_header(self.dir / f"{space}.{level}.faiss")
        if header is None or not isinstance(header.get("spec"), dict):
            return None
        return ann.IndexSpec.from_dict(header["spec"]).describe()

    def mixed(self, space: str, model: str) -> bool:
        """Whether the space still holds vectors of a model other than `model`, checked
        again only after a commit."""
        seen = self._catalog_signature()
        known = self._mixed.get((space, model))
        if known is None or known[0] != seen:
            known = (seen, self.catalog.has_other_models(space, model))
            self._mixed[(space, model)] = known
        return known[1]

    def _catalog_signature(self) -> tuple[Any, ...]:
        """Every commit writes the WAL file (or, after a checkpoint, the database file):
        their stat tells a reader, without a query, that nothing changed."""
        out: list[Any] = []
        for name in ("catalog.db", "catalog.db-wal"):
            try:
                st = (self.dir / name).stat()
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def sync(self, spaces: tuple[str, ...], *, rebuild: bool = True) -> None:
        """Writer side: catch every cache up, move it to the right index type for its size,
        save it, then drop the tombstones every saved cache has applied."""
        applied = []
        for space in spaces:
            for level in LEVELS:
                vc = self.cache(space, level)
                if rebuild:
                    vc.rebuild_if_needed()
                vc.save()
                vc.drop_old_bases()
                applied.append(int(vc.state["tomb_seq"]))
        if applied and min(applied) > self.catalog.pruned_through():
            self.catalog.prune_tombstones(min(applied))
        for tmp in self.dir.glob("*.faiss.tmp"):
            tmp.unlink(missing_ok=True)

    def search(
        self,
        space: str,
        query: np.ndarray,
        k: int,
        filters: Filters | None = None,
        level: str = "segment",
        model: str | None = None,
    ) -> tuple[list[tuple[int, float]], bool]:
        """Up to k (id, exact cosine) pairs passing the filters, best first, and whether the
        space has no more to give. Filters are checked on candidates after the k-NN (one
        lookup per candidate); when too few pass, the ids that pass are listed (a selective
        filter makes that list short) and searched inside."""
        vc = self.cache(space, level)
        if len(vc) == 0:
            return [], True
        if model is not None and self.mixed(space, model):
            filters = replace(filters or Filters(), model=model)
        active = filters is not None and filters.active()
        spec = vc.index.spec if vc.index is not None else None
        approximate = spec is not None and spec.kind != "flat"
        # approximate codes: re-score extra candidates exactly; `candidates` x 10 keeps the
        # top 10 at the recall measured in docs/benchmarks.md, deeper ranks need less
        fetch = k + (spec.candidates * 10 if spec is not None and approximate else 0)
        if active:
            fetch = max(fetch * 4, 200)
        ids, scores = vc.search(query, fetch)
        exhausted = len(ids) < fetch
        exact = False
        if active:
            assert filters is not None
            ok = self.catalog.passing(ids.tolist(), filters, level)
            mask = np.fromiter((int(i) in ok for i in ids), bool, len(ids))
            if mask.sum() < k and not exhausted:
                ids, scores, exhausted, exact = self._search_inside(vc, query, k, fetch, filters)
            else:
                ids, scores = ids[mask], scores[mask]
        if len(ids) and not exact:  # exact cosines from the stored vectors, not the codes
            exact = self.catalog.vector_map(ids.tolist(), level)
            ids = np.fromiter((i for i in ids if int(i) in exact), np.int64)
            scores = np.array([float(exact[int(i)] @ query) for i in ids], np.float32)
        order = np.lexsort((ids, -scores))[:k]
        return [(int(ids[j]), float(scores[j])) for j in order], exhausted and len(order) < k

    def _search_inside(
        self, vc: VectorCache, query: np.ndarray, k: int, fetch: int, filters: Filters
    ) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        """k-NN restricted to the ids passing a selective filter: exact over their stored
        vectors (read with the listing itself) when they are few, else inside the index
        with an id selector. The last flag: the scores are exact already."""
        listed = self.catalog.allowed_vectors(
            vc.space, filters, EXACT_FILTER_LIMIT + 1, vc.level, query.shape[-1]
        )
        if listed is not None:
            ids, vecs = listed
            if not len(ids):
                return ids, np.zeros(0, np.float32), True, True
            sims = (vecs @ query).astype(np.float32)
            if len(ids) > k:  # only the best k can be kept: no need to sort the rest
                top = np.argpartition(-sims, k - 1)[:k]
                ids, sims = ids[top], sims[top]
            return ids, sims, True, True
        allowed = self.catalog.allowed_ids(vc.space, filters, 1 << 62, vc.level)
        mask = np.zeros(int(allowed.max()) + 1, bool)
        mask[allowed] = True  # a bitmap: no hash set of many ids to build per query
        ids, scores = vc.search(query, fetch, ann.Allowed.from_mask(mask))
        return ids, scores, len(ids) < fetch, False

    def calibration(self, models: dict[str, str]) -> dict[str, tuple[float, float]]:
        """Fitted cosine ranges per space, re-read when another process refits them."""
        from searchengine import calibration

        path = self.dir / calibration.FILE_NAME
        try:
            st = path.stat()
            sig: Any = (st.st_ino, st.st_mtime_ns, st.st_size, tuple(sorted(models.items())))
        except OSError:
            sig = None
        if self._calibration is None or self._calibration[0] != sig:
            self._calibration = (sig, calibration.ranges(self.dir, models))
        return self._calibration[1]


__all__ = ["Store", "VectorCache", "OutdatedFormat", "LEVELS", "exact_below"]
