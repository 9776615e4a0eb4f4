"""The `clap` space: CLAP (through transformers) over audio windows, with text queries.

`config.models["clap"]` is a Hugging Face hub id ("laion/clap-htsat-unfused") or a folder
written by `save_pretrained` holding a `ClapModel` and its `ClapProcessor`.
"""

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

BATCH = 8
TEXT_BATCH = 64
HOW_TO_FIX = (
    "Pass --clap with a folder written by save_pretrained (ClapModel and ClapProcessor), "
    "or index once where huggingface.co is reachable, without --offline / "
    "SEARCHENGINE_OFFLINE=1: the weights download then."
)


def _is_hub_id(name: str) -> bool:
    """`org/name`, as the hub spells ids; anything else is meant as a local folder."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith(("~", "."))


def resolve(config: IndexConfig) -> Resolved:
    name = config.models["clap"]
    return resolve_folder_model("clap", name, name if _is_hub_id(name) else None, HOW_TO_FIX)


def _pooled(output: Any) -> Any:
    """transformers 5 returns a BaseModelOutputWithPooling whose `pooler_output` holds the
    projected features; 4.x returned the projected tensor itself."""
    pooled = getattr(output, "pooler_output", None)
    return output if pooled is None else pooled


class ClapEncoder:
    """Embeds mono PCM windows and text queries with a CLAP model under inference mode."""

    space = "clap"

    def __init__(self, location: str) -> None:
        import torch
        from transformers import ClapModel, ClapProcessor

        set_torch_threads()
        self._torch = torch
        self.processor = ClapProcessor.from_pretrained(location, local_files_only=True)
        self.device = torch_device()
        self.model = ClapModel.from_pretrained(location, local_files_only=True).eval()
        self.model.to(self.device)
        self.feature_extractor = self.processor.feature_extractor
        self.tokenizer = self.processor.tokenizer
        self.dim = int(self.model.config.projection_dim)
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.window = int(self.feature_extractor.nb_max_samples)

    def _windows(self, wave: Any) -> list[np.ndarray]:
        """One PCM payload -> windows the model sees whole (at most `self.window` samples).

        The feature extractor crops longer audio at random ("rand_trunc"/"fusion"); tiling it
        ourselves keeps embeddings deterministic and covers the whole payload.
        """
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        if wave.size == 0:
            wave = np.zeros(self.sample_rate // 10, dtype=np.float32)  # silence, not a crash
        if wave.size <= self.window:
            return [wave]
        starts = list(range(0, wave.size - self.window + 1, self.window))
        if starts[-1] + self.window < wave.size:
            starts.append(wave.size - self.window)  # a full last window, not a short tail
        return [wave[s : s + self.window] for s in starts]

    def preprocess_batch(self, waves: list[np.ndarray]) -> dict[str, Any]:
        """PCM windows (each at most `self.window` samples) -> model inputs."""
        inputs = self.feature_extractor(
            [np.asarray(w, dtype=np.float32) for w in waves],
            sampling_rate=self.sample_rate,
            return_tensors="pt",
        )
        features = inputs["input_features"].to(self.model.dtype)
        # No window is longer than the model's, so none is "longer"; the extractor would
        # otherwise mark one at random for fusion models.
        is_longer = self._torch.zeros((features.shape[0], 1), dtype=self._torch.bool)
        return {"input_features": features, "is_longer": is_longer}

    def forward_tensors(self, inputs: dict[str, Any]) -> np.ndarray:
        """Model inputs -> L2-normalised float32 rows (the pure forward pass)."""
        with self._torch.inference_mode():
            moved = {key: value.to(self.device) for key, value in inputs.items()}
            rows = _pooled(self.model.get_audio_features(**moved))
        return normalise(rows.float().cpu().numpy())

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = self.tokenizer(
                list(texts[start : start + TEXT_BATCH]),
                padding=True,
                truncation=True,
                return_tensors="pt",
            )
            with self._torch.inference_mode():
                rows = _pooled(
                    self.model.get_text_features(
                        input_ids=tokens["input_ids"].to(self.device),
                        attention_mask=tokens["attention_mask"].to(self.device),
                    )
                )
            out.append(rows.float().cpu().numpy())
        return normalise(np.concatenate(out))

    def embed_items(self, payloads: list[Any]) -> np.ndarray:
        """Mono float32 PCM arrays at `sample_rate` -> one row each; audio longer than the
        model's window is the mean of its windows' embeddings."""
        if not payloads:
            return np.zeros((0, self.dim), dtype=np.float32)
        windows: list[np.ndarray] = []
        owners: list[int] = []
        for index, payload in enumerate(payloads):
            for window in self._windows(payload):
                windows.append(window)
                owners.append(index)
        rows = np.concatenate(
            [
                self.forward_tensors(self.preprocess_batch(windows[start : start + BATCH]))
                for start in range(0, len(windows), BATCH)
            ]
        )
        summed = np.zeros((len(payloads), self.dim), dtype=np.float32)
        np.add.at(summed, np.asarray(owners), rows)
        return normalise(summed)


def load(resolved: Resolved) -> ClapEncoder:
    return ClapEncoder(resolved.location)
