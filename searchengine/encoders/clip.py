"""The `clip` space: open_clip over images and video frames, with text queries.

`config.models["clip"]` is an open_clip model name ("ViT-B-32") or a path to an open_clip
model-config JSON ({"embed_dim", "vision_cfg", "text_cfg"}); `config.clip_pretrained` is an
open_clip pretrained tag ("laion2b_s34b_b79k") or a checkpoint file (.pt/.bin/.safetensors).
Resolution always ends at one local checkpoint file, which `load` hands to open_clip.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from searchengine.config import IndexConfig
from searchengine.encoders.base import (
    Attempts,
    Resolved,
    fetch,
    normalise,
    set_torch_threads,
    torch_device,
)
from searchengine.errors import ModelUnavailable

BATCH = 32
TEXT_BATCH = 256
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
HOW_TO_FIX = (
    "Put a checkpoint file path in --clip-pretrained, or index once where huggingface.co "
    "is reachable, without --offline / SEARCHENGINE_OFFLINE=1: the weights download then."
)


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.startswith(("~", "."))
        or value.lower().endswith(CHECKPOINT_SUFFIXES + (".json",))
    )


def _model_name(name: str) -> tuple[str, dict[str, Any]]:
    """The open_clip model name to build, and its architecture config.

    A model-config JSON is registered with open_clip (`add_model_config`) under its file stem,
    which is the name open_clip's factory and tokenizer look up.
    """
    import open_clip

    path = Path(name).expanduser()
    if path.suffix == ".json":  # the only suffix open_clip's config registry accepts
        if not path.is_file():
            raise ModelUnavailable(f"clip model config '{name}' not found (no such file).")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"clip model config '{name}' is not valid JSON: {exc}") from exc
        if not isinstance(cfg, dict) or not all(
            k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")
        ):
            raise ModelUnavailable(
                f"clip model config '{name}' is not an open_clip model config "
                "(it needs embed_dim, vision_cfg and text_cfg)."
            )
        stem = path.stem
        known = open_clip.get_model_config(stem)
        if known is None:
            open_clip.add_model_config(path.resolve())
        elif known != cfg:
            raise ModelUnavailable(
                f"clip model config '{name}' clashes with a different open_clip model named "
                f"'{stem}'; rename the file."
            )
        return stem, cfg
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelUnavailable(
            f"clip model '{name}' is neither an open_clip model name (such as ViT-B-32; "
            "open_clip.list_models() has them all) nor a model-config JSON file."
        )
    return name, cfg


def _cached_checkpoint(pretrained_cfg: dict[str, Any]) -> str | None:
    """The checkpoint a pretrained tag names, if already in the HF or open_clip cache."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    local = pretrained_cfg.get("file")
    if local and os.path.isfile(local):
        return str(local)
    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        candidates = [filename]
        if filename == HF_WEIGHTS_NAME:
            candidates.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for candidate in candidates:
            try:
                found = try_to_load_from_cache(repo_id, candidate)
            except Exception:
                found = None
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = pretrained_cfg.get("url", "")
    if url:  # open_clip's own download folder (download_pretrained_from_url)
        target = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if target.is_file() and not _is_torchscript(target):
            return str(target)
    return None


def _is_torchscript(path: Path) -> bool:
    """OpenAI's original files (also in ~/.cache/clip) are TorchScript archives, which
    open_clip's state-dict loader refuses under weights_only=True."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _checkpoint_in(folder: Path) -> Path | None:
    for suffix in (".safetensors", ".bin", ".pth", ".pt"):
        found = sorted(folder.glob(f"*{suffix}"))
        if found:
            return found[0]
    return None


def resolve(config: IndexConfig) -> Resolved:
    import open_clip

    from searchengine.encoders.registry import packaged_path

    name = config.models["clip"]
    tag = config.clip_pretrained
    model_name, model_cfg = _model_name(name)
    extra: dict[str, Any] = {"model": model_name, "embed_dim": int(model_cfg["embed_dim"])}
    attempts = Attempts("clip", f"{name} / {tag}")

    checkpoint = Path(tag).expanduser()
    if checkpoint.is_file():
        return Resolved("clip", name, str(checkpoint.resolve()), "path", extra)
    if _looks_like_path(tag):
        attempts.tried.append(f"checkpoint file {tag} (no such file)")
        raise attempts.fail(HOW_TO_FIX)
    attempts.tried.append("local path")

    shipped = packaged_path(config.model_key("clip"))
    if shipped is not None:
        found = shipped if shipped.is_file() else _checkpoint_in(shipped)
        if found is not None:
            return Resolved("clip", name, str(found), "package", extra)
    attempts.tried.append("installed packages")

    pretrained_cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not pretrained_cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        known = ", ".join(tags[:6]) + (", ..." if len(tags) > 6 else "") if tags else "none"
        attempts.tried.append(
            f"open_clip pretrained tags for {model_name} ({known}; '{tag}' is not one)"
        )
        raise attempts.fail(HOW_TO_FIX)
    extra["preprocess"] = {k: pretrained_cfg[k] for k in PREPROCESS_KEYS if k in pretrained_cfg}
    extra["quick_gelu"] = bool(pretrained_cfg.get("quick_gelu", False))

    cached = _cached_checkpoint(pretrained_cfg)
    if cached is not None:
        return Resolved("clip", name, cached, "cache", extra)
    attempts.tried.append("Hugging Face and open_clip caches")

    target = fetch(attempts, lambda: open_clip.download_pretrained(pretrained_cfg))
    if target and os.path.isfile(target):
        return Resolved("clip", name, str(target), "download", extra)
    if target is not None:
        attempts.tried.append("download (nothing to download for this tag)")
    raise attempts.fail(HOW_TO_FIX)


class ClipEncoder:
    """Embeds images and text queries with an open_clip model under inference mode."""

    space = "clip"

    def __init__(self, resolved: Resolved) -> None:
        import open_clip
        import torch
        from open_clip.transform import PreprocessCfg, image_transform_v2

        set_torch_threads()
        self._torch = torch
        self.device = torch_device()
        model_name = resolved.extra.get("model") or _model_name(resolved.name)[0]
        model_cfg = open_clip.get_model_config(model_name) or {}
        quick_gelu = bool(resolved.extra.get("quick_gelu")) and not model_cfg.get("quick_gelu")
        self.model = open_clip.create_model(
            model_name,
            pretrained=resolved.location,
            device=self.device,
            force_quick_gelu=quick_gelu,
            force_preprocess_cfg=resolved.extra.get("preprocess") or None,
        ).eval()
        self.preprocess = image_transform_v2(
            PreprocessCfg(**self.model.visual.preprocess_cfg), is_train=False
        )
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.dim = int(resolved.extra.get("embed_dim") or model_cfg["embed_dim"])

    def preprocess_batch(self, images: list[Any]) -> Any:
        """PIL images -> one float tensor batch, as the eval transform makes it."""
        return self._torch.stack([self.preprocess(image) for image in images])

    def forward_tensors(self, batch: Any) -> np.ndarray:
        """A preprocessed image batch -> L2-normalised float32 rows (the pure forward pass)."""
        with self._torch.inference_mode():
            rows = self.model.encode_image(batch.to(self.device))
        return normalise(rows.float().cpu().numpy())

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = self.tokenizer(list(texts[start : start + TEXT_BATCH]))
            with self._torch.inference_mode():
                out.append(self.model.encode_text(tokens.to(self.device)).float().cpu().numpy())
        return normalise(np.concatenate(out))

    def embed_items(self, payloads: list[Any]) -> np.ndarray:
        if not payloads:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [
            self.forward_tensors(self.preprocess_batch(payloads[start : start + BATCH]))
            for start in range(0, len(payloads), BATCH)
        ]
        return normalise(np.concatenate(out))


def load(resolved: Resolved) -> ClipEncoder:
    return ClipEncoder(resolved)


def resolve_light(config: IndexConfig) -> Resolved | None:
    """The checkpoint when finding it needs no open_clip (a file path), for the query path;
    None for a pretrained tag, whose lookup lives in open_clip (which imports torch)."""
    checkpoint = Path(config.clip_pretrained).expanduser()
    if checkpoint.is_file():
        return Resolved("clip", config.models["clip"], str(checkpoint.resolve()), "path")
    return None


def describe(config: IndexConfig, resolved: Resolved) -> tuple[dict[str, str], dict[str, Path]]:
    """What defines the model for its identity: the checkpoint's bytes, the model-config
    JSON's bytes or the open_clip model name, and the pretrained tag (it sets quick_gelu)."""
    name, tag = config.models["clip"], config.clip_pretrained
    files = {"checkpoint": Path(resolved.location)}
    descriptor = {"model": name, "pretrained": tag}
    if Path(name).suffix == ".json":
        files["model_config"] = Path(name).expanduser()
        descriptor["model"] = "file"
    if Path(tag).expanduser().is_file():
        descriptor["pretrained"] = "file"
    return descriptor, files
