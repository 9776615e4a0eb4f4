"""Per-index settings, kept as JSON in the index folder so every run uses the same models."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONFIG_NAME = "config.json"

DEFAULT_MODELS: dict[str, str] = {
    "text": "sentence-transformers/all-MiniLM-L6-v2",
    "clip": "ViT-B-32",
    "clap": "laion/clap-htsat-unfused",
    "speech": "tiny.en",
    "voice": "resemblyzer",
    "ocr": "tesseract",  # where installed, else rapidocr: see default_models()
}
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"


def default_models() -> dict[str, str]:
    """The models a new index records. OCR: the most accurate engine installed here
    (measured: docs/benchmarks.md), so Tesseract, else RapidOCR (its models ship in its
    wheel); recorded in config.json, so the index keeps its engine on another machine."""
    from searchengine.media.ocr import default_engine

    return {**DEFAULT_MODELS, "ocr": default_engine()}


@dataclass
class IndexConfig:
    """Settings that define what an index contains; changing a model re-embeds its space only."""

    models: dict[str, str] = field(default_factory=lambda: default_models())
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    chunk_chars: int = 1000
    chunk_overlap: int = 200
    max_text_mb: float = 20.0
    audio_window_s: float = 10.0
    audio_hop_s: float = 5.0
    video_frame_every_s: float = 3.0

    @classmethod
    def load(cls, index_dir: Path) -> IndexConfig:
        path = index_dir / CONFIG_NAME
        if not path.exists():
            return cls()
        return cls.load_dict(json.loads(path.read_text(encoding="utf-8")))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load_dict(cls, raw: dict) -> IndexConfig:
        cfg = cls()
        cfg.models.update(raw.get("models", {}))
        for key in (
            "clip_pretrained",
            "chunk_chars",
            "chunk_overlap",
            "max_text_mb",
            "audio_window_s",
            "audio_hop_s",
            "video_frame_every_s",
        ):
            if key in raw:
                setattr(cfg, key, raw[key])
        return cfg

    def save(self, index_dir: Path) -> None:
        """Write atomically so a kill never leaves half a config."""
        tmp = index_dir / (CONFIG_NAME + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, index_dir / CONFIG_NAME)

    def model_key(self, space: str) -> str:
        """Identity of a space's model; vectors made under another key are stale."""
        if space == "clip":
            return f"{self.models['clip']}|{self.clip_pretrained}"
        return self.models[space]


def default_index_dir() -> Path:
    """`$SEARCHENGINE_INDEX`, else the per-user data folder (XDG)."""
    env = os.environ.get("SEARCHENGINE_INDEX")
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "searchengine" / "default"
