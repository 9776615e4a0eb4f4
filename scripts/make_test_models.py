"""Write tiny, randomly initialised models in the real on-disk formats, for tests.

    python scripts/make_test_models.py [--out tests/.models] [--force]

- `tiny-clip.json` + `tiny-clip.pt`: an open_clip model-config JSON (the format of
  open_clip's `model_configs/*.json`) and its state dict saved with `torch.save`, loaded in
  production by `--clip tiny-clip.json --clip-pretrained tiny-clip.pt`.
- `tiny-clap/`: a transformers `ClapModel` + `ClapProcessor` written by `save_pretrained`,
  loaded by `--clap tiny-clap`.

Random weights prove plumbing, never relevance. Everything is built offline (no download),
deterministically (fixed seed), and skipped when already present unless `--force`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SEED = 0
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / ".models"

CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    # vocab_size and context_length match open_clip's default SimpleTokenizer.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CLIP_NAME = "tiny-clip"
CLAP_NAME = "tiny-clap"
CLAP_PROJECTION_DIM = 24


def _seed() -> None:
    import torch

    torch.manual_seed(SEED)


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary sibling so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def make_clip(out_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """Tiny open_clip ViT: (model-config JSON path, checkpoint path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / f"{CLIP_NAME}.json"
    checkpoint_path = out_dir / f"{CLIP_NAME}.pt"
    if config_path.exists() and checkpoint_path.exists() and not force:
        return config_path, checkpoint_path

    import open_clip
    import torch

    _seed()
    model = open_clip.CLIP(**json.loads(json.dumps(CLIP_CONFIG))).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # saving to a buffer keeps the archive name, so the bytes, stable
    torch.save(state, buffer)
    _atomic_write(checkpoint_path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    _atomic_write(
        config_path,
        lambda tmp: tmp.write_text(json.dumps(CLIP_CONFIG, indent=2) + "\n", encoding="utf-8"),
    )
    return config_path, checkpoint_path


def _byte_level_vocab() -> dict[str, int]:
    """A RoBERTa-style byte-level BPE vocabulary: specials, the 256 byte symbols, <mask>."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in sorted(bytes_to_unicode().values()):
        vocab.setdefault(symbol, len(vocab))
    # A few merges so common words are not all single bytes (still a real BPE).
    for merged in ("Ġt", "he", "Ġthe", "Ġa", "in", "er", "Ġs", "og", "Ġd", "Ġdog"):
        vocab.setdefault(merged, len(vocab))
    vocab["<mask>"] = len(vocab)
    return vocab


_MERGE_LINES = "Ġ t|h e|Ġt he|Ġ a|i n|e r|Ġ s|o g|Ġ d|Ġd og"
MERGES = [tuple(line.split()) for line in _MERGE_LINES.split("|")]


def make_clap(out_dir: Path, force: bool = False) -> Path:
    """Tiny transformers CLAP (RoBERTa text tower, HTS-AT audio tower) + processor folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / CLAP_NAME
    # The folder is renamed into place whole, so its config means it is complete.
    if (target / "config.json").exists() and not force:
        return target

    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        RobertaTokenizer,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    vocab = _byte_level_vocab()
    tokenizer = RobertaTokenizer(vocab=vocab, merges=list(MERGES), model_max_length=512)
    # The feature extractor keeps its real defaults (48 kHz, 64 mel bins, 10 s windows, hop 480)
    # except truncation: "rand_trunc" is what a non-fusion CLAP (htsat-unfused) is fed; the
    # default "fusion" stacks 4 mel channels, which only a fusion model accepts.
    feature_extractor = ClapFeatureExtractor(truncation="rand_trunc")
    processor = ClapProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)

    config = ClapConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 514,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        audio_config={
            "spec_size": 256,  # with 64 mel bins: freq_ratio 4, as the real model
            "num_mel_bins": feature_extractor.feature_size,
            "window_size": 8,
            "patch_size": 4,
            "patch_stride": [4, 4],
            "patch_embeds_hidden_size": 16,
            "depths": [1, 1],
            "num_attention_heads": [2, 2],
            "hidden_size": 32,  # = patch_embeds_hidden_size * 2 ** (len(depths) - 1)
            "enable_fusion": False,
        },
        projection_dim=CLAP_PROJECTION_DIM,
    )
    _seed()
    model = ClapModel(config).eval()

    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{CLAP_NAME}."))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        os.chmod(staging, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def make_all(out_dir: Path, force: bool = False) -> dict[str, Path]:
    """Every tiny test model under `out_dir`; returns where each one is."""
    out_dir = Path(out_dir)
    clip_config, clip_checkpoint = make_clip(out_dir, force=force)
    clap_dir = make_clap(out_dir, force=force)
    return {"clip_config": clip_config, "clip_checkpoint": clip_checkpoint, "clap": clap_dir}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--force", action="store_true", help="rewrite models already present")
    args = parser.parse_args(argv)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(key, "1")
    started = time.perf_counter()
    made = make_all(args.out, force=args.force)
    for key, path in made.items():
        print(f"{key}: {path}")
    print(f"done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
