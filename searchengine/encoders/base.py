"""What every space's encoder offers, and the shared steps of finding weights."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from searchengine.errors import ModelUnavailable


class Encoder(Protocol):
    """A loaded model that owns one vector space."""

    space: str
    dim: int

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Text queries -> L2-normalised float32 rows."""
        ...

    def embed_items(self, payloads: list[Any]) -> np.ndarray:
        """Segment payloads (text chunks, images, PCM windows) -> L2-normalised float32 rows."""
        ...


@dataclass
class Resolved:
    """Where a model's weights were found and how; `location` is a path or a hub id."""

    space: str
    name: str
    location: str
    source: str  # "path", "package", "cache", "download"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attempts:
    """The places looked in, so a missing model explains itself in one line."""

    space: str
    name: str
    tried: list[str] = field(default_factory=list)

    def fail(self, how_to_fix: str) -> ModelUnavailable:
        where = "; ".join(self.tried) or "nowhere"
        return ModelUnavailable(
            f"{self.space} model '{self.name}' not found (tried: {where}). {how_to_fix}"
        )


def downloads_allowed() -> bool:
    """Downloads are opt-in: a local-first tool must never reach the network by surprise."""
    return os.environ.get("SEARCHENGINE_ALLOW_DOWNLOAD", "") == "1" and os.environ.get(
        "HF_HUB_OFFLINE", ""
    ) not in ("1", "true", "True")


def force_hub_offline() -> None:
    """Stop huggingface_hub from contacting the hub unless downloads were asked for, and keep
    library progress bars off our terminal (we draw our own)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not downloads_allowed():
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"


def hf_cached_snapshot(repo_id: str) -> Path | None:
    """A complete local Hugging Face snapshot of `repo_id`, without any network call."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def hf_download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id))


def normalise(rows: np.ndarray) -> np.ndarray:
    """L2-normalise rows as float32 so inner product is cosine similarity."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(rows / norms)


def set_torch_threads() -> None:
    """Use every core we were given, explicitly (`SEARCHENGINE_THREADS` overrides)."""
    import torch

    threads = int(os.environ.get("SEARCHENGINE_THREADS", "0")) or (os.cpu_count() or 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def resolve_folder_model(space: str, name: str, repo: str | None, how_to_fix: str) -> Resolved:
    """The resolution order of DESIGN.md for models that are folders: an explicit local
    folder, a package that ships the weights, the Hugging Face cache of `repo`, then a
    download when allowed. `repo` None means `name` can only be a local folder."""
    from searchengine.encoders.registry import packaged_path

    attempts = Attempts(space, name)
    path = Path(name).expanduser()
    if path.is_dir():
        return Resolved(space, name, str(path.resolve()), "path")
    if repo is None:
        attempts.tried.append(f"local folder {name} (no such folder)")
        raise attempts.fail(how_to_fix)
    attempts.tried.append("local path")
    shipped = packaged_path(name)
    if shipped is not None:
        return Resolved(space, name, str(shipped), "package")
    attempts.tried.append("installed packages")
    cached = hf_cached_snapshot(repo)
    if cached is not None:
        return Resolved(space, name, str(cached), "cache")
    attempts.tried.append("Hugging Face cache")
    if downloads_allowed():
        return Resolved(space, name, str(hf_download(repo)), "download")
    attempts.tried.append("download (off; SEARCHENGINE_ALLOW_DOWNLOAD=1 enables it)")
    raise attempts.fail(how_to_fix)
