"""The vector-index interface every index type implements, and the filter passed into a search.

An index is a derived cache of the catalog's vectors keyed by int64 segment id: it can always
be rebuilt, so `load` answers None for anything it cannot trust instead of raising.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np


@dataclass(frozen=True, eq=False)
class Allowed:
    """The ids a search may return, checked inside FAISS while scanning, so a filter does not
    shrink the result list the way filtering the top k afterwards would.

    Either an explicit id array (small sets; faiss IDSelectorBatch) or a bitmap over ids
    (bit i of byte i >> 3, little bit order; faiss IDSelectorBitmap), cheap for large sets.
    """

    ids: np.ndarray | None = None
    bitmap: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.ids is None) == (self.bitmap is None):
            raise ValueError("Allowed takes exactly one of ids or bitmap")
        if self.ids is not None:
            object.__setattr__(self, "ids", np.ascontiguousarray(self.ids, dtype=np.int64))
        else:
            object.__setattr__(self, "bitmap", np.ascontiguousarray(self.bitmap, dtype=np.uint8))

    @classmethod
    def from_ids(cls, ids: np.ndarray | list[int]) -> Allowed:
        return cls(ids=np.unique(np.asarray(ids, dtype=np.int64)))

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> Allowed:
        """A boolean mask indexed by id (mask[i] True = id i allowed), packed into a bitmap."""
        return cls(bitmap=np.packbits(np.asarray(mask, dtype=bool), bitorder="little"))

    @cached_property
    def count(self) -> int:
        """How many ids are allowed (an upper bound on what a search can return)."""
        if self.ids is not None:
            return len(np.unique(self.ids))
        return int(np.unpackbits(self.bitmap).sum())

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of `ids` are allowed (same rule as the FAISS selector)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.ids is not None:
            return np.isin(ids, self.ids)
        byte = ids >> 3
        ok = (ids >= 0) & (byte < len(self.bitmap))
        out = np.zeros(ids.shape, dtype=bool)
        out[ok] = (self.bitmap[byte[ok]] >> (ids[ok] & 7)) & 1 == 1
        return out

    def selector(self) -> faiss.IDSelector:
        """A FAISS selector; it holds a reference to the numpy buffer FAISS reads from."""
        if self.ids is not None:
            sel = faiss.IDSelectorBatch(len(self.ids), faiss.swig_ptr(self.ids))
            sel.referenced_objects = [self.ids]
        else:
            sel = faiss.IDSelectorBitmap(len(self.bitmap), faiss.swig_ptr(self.bitmap))
            sel.referenced_objects = [self.bitmap]
        return sel


@dataclass(frozen=True)
class IndexSpec:
    """What to build for a space: chosen by factory.choose, saved with the index.

    `dim` is the dimension it was chosen for.
    kind "flat": exact search, vectors stored as float16 (the catalog's own precision).
    kind "ivf": an inverted file with `nlist` lists, of which `nprobe` are scanned per query;
    codes are product-quantised (`pq_m` bytes of `pq_bits` each) or scalar-quantised (`sq`,
    e.g. "8bit") when pq_m is 0. `candidates` is how many times k the caller should fetch
    and re-score exactly; `train_size` how many sample rows `train` wants.
    """

    kind: str
    dim: int = 0
    nlist: int = 0
    pq_m: int = 0
    pq_bits: int = 8
    sq: str = ""
    nprobe: int = 0
    candidates: int = 1
    train_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """For people: "exact", "IVF1265,SQ4" or "IVF4000,PQ48 on disk"."""
        if not self.nlist:
            return "exact" if self.kind == "flat" else self.kind
        codes = f"PQ{self.pq_m}" if self.pq_m else f"SQ{self.sq or 8}"
        return f"IVF{self.nlist},{codes}" + (" on disk" if self.kind == "ivf-ondisk" else "")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class VectorIndex(ABC):
    """Inner-product k-NN over L2-normalised vectors, keyed by int64 id.

    Scores are approximate for approximate kinds: callers re-score candidates exactly from
    the stored vectors. Not thread-safe: a writer must not run concurrently with searches.
    """

    kind: ClassVar[str]
    kinds: ClassVar[dict[str, type[VectorIndex]]] = {}
    dim: int
    spec: IndexSpec

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            VectorIndex.kinds[cls.kind] = cls

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    def is_trained(self) -> bool:
        return True

    def train(self, rows: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """Fit the index to sample rows (no-op for kinds that need no training)."""

    @abstractmethod
    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Add rows (n, dim) under ids (n,); ids must not be present already."""

    @abstractmethod
    def remove(self, ids: np.ndarray | list[int]) -> int:
        """Drop ids; unknown ids are ignored. Returns how many were removed."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every id held (int64, unordered), for catching up with the catalog."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, allowed: Allowed | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k), best first; missing results are id -1, score -inf."""

    @abstractmethod
    def save(self, path: Path, state: dict[str, Any]) -> None:
        """Write index and `state` together atomically: readers see the old or the new pair."""


class FaissIndex(VectorIndex):
    """What the FAISS-backed kinds share: the file, the mmap copy-on-write, padding rules."""

    def __init__(self, index: faiss.Index, spec: IndexSpec, mapped: bool = False) -> None:
        self._index = index
        self.dim = int(index.d)
        self.spec = spec
        self._mapped = mapped

    @classmethod
    def _from_faiss(
        cls, index: faiss.Index, meta: dict[str, Any], mapped: bool, path: Path
    ) -> FaissIndex:
        """The index read from `path` with its header `meta` (ValueError: not usable)."""
        if int(index.d) != int(meta["dim"]):
            raise ValueError("dimension in header and index disagree")
        spec = IndexSpec.from_dict(meta["spec"])
        return cls(index, spec, mapped=mapped, **cls._restore_extra(meta, Path(path)))

    @classmethod
    def _restore_extra(cls, meta: dict[str, Any], path: Path) -> dict[str, Any]:
        """What `_header_extra` saved, as keyword arguments of the kind's constructor."""
        return {}

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} n={len(self)} dim={self.dim} {self.spec}>"

    def _writable(self) -> faiss.Index:
        """A memory-mapped index is read-only (FAISS would crash changing it): copy it first."""
        if self._mapped:
            self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
            self._mapped = False
        return self._index

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"expected rows of dimension {self.dim}, got shape {rows.shape}")
        return rows

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        rows = self._rows(rows)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(rows):
            raise ValueError(f"{len(ids)} ids for {len(rows)} rows")
        if len(ids) == 0:
            return
        if not self.is_trained:
            raise RuntimeError(f"{self.kind} index must be trained before add")
        self._writable().add_with_ids(rows, ids)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0 or len(self) == 0:
            return 0
        return int(self._writable().remove_ids(ids))

    def search(
        self, queries: np.ndarray, k: int, allowed: Allowed | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = self._rows(queries)
        n = len(queries)
        if k <= 0 or len(self) == 0 or (allowed is not None and allowed.count == 0):
            return np.full((n, max(k, 0)), -np.inf, np.float32), np.full((n, max(k, 0)), -1)
        scores, ids = self._search(queries, k, allowed)
        scores[ids < 0] = -np.inf
        return scores, ids

    @abstractmethod
    def _search(
        self, queries: np.ndarray, k: int, allowed: Allowed | None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, path: Path, state: dict[str, Any]) -> None:
        from searchengine.store.vectors import storage

        header = {"kind": self.kind, "dim": self.dim, "spec": self.spec.to_dict(), "state": state}
        storage.write(Path(path), self._index, {**header, **self._header_extra()})

    def _header_extra(self) -> dict[str, Any]:
        """What a kind saves beside its FAISS bytes (the on-disk kind: where its base is)."""
        return {}


def load(path: Path, mmap: bool = True) -> tuple[VectorIndex, dict[str, Any]] | None:
    """The saved (index, state) pair, or None when the file is missing, cut short or not ours.

    With mmap the codes stay in the page cache instead of the process heap where FAISS allows
    it; the first add or remove then copies them into memory.
    """
    from searchengine.store.vectors import storage

    header = storage.read_header(Path(path))
    if header is None:
        return None
    cls = VectorIndex.kinds.get(str(header.get("kind")))
    if cls is None or not issubclass(cls, FaissIndex):
        return None
    index = storage.read_index(Path(path), mmap=mmap)
    if index is None:
        return None
    try:
        vindex = cls._from_faiss(index, header, mmap, Path(path))
    except (ValueError, KeyError, TypeError, RuntimeError, OSError):
        return None
    state = header.get("state")
    return vindex, state if isinstance(state, dict) else {}
