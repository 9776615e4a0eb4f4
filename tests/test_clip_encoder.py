"""The `clip` space through the registry, on a tiny random open_clip checkpoint in the real
format (model-config JSON + state dict) written by scripts/make_test_models.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchengine.config import IndexConfig
from searchengine.encoders.registry import ModelRegistry
from searchengine.errors import ModelUnavailable
from tests.conftest import load_script


def tiny_config(models: dict[str, Path], **overrides) -> IndexConfig:
    config = IndexConfig()
    config.models["clip"] = str(models["clip_config"])
    config.clip_pretrained = str(models["clip_checkpoint"])
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def encoder(test_models):
    return ModelRegistry(tiny_config(test_models)).encoder("clip")


def photo(seed: int, size=(120, 80)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def checkerboard(size=96, cell=12) -> Image.Image:
    ys, xs = np.indices((size, size))
    board = (((ys // cell) + (xs // cell)) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([board, board, board], axis=-1), "RGB")


def assert_unit_rows(rows: np.ndarray, n: int, dim: int) -> None:
    assert rows.shape == (n, dim)
    assert rows.dtype == np.float32
    assert rows.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_script_writes_real_formats_and_is_idempotent(test_models):
    import json

    import torch

    cfg = json.loads(test_models["clip_config"].read_text())
    assert set(cfg) >= {"embed_dim", "vision_cfg", "text_cfg"}
    assert cfg["text_cfg"]["vocab_size"] == 49408 and cfg["text_cfg"]["context_length"] == 77
    state = torch.load(test_models["clip_checkpoint"], weights_only=True)
    assert "visual.conv1.weight" in state and "token_embedding.weight" in state
    before = test_models["clip_checkpoint"].stat().st_mtime_ns
    again = load_script("make_test_models").make_all(test_models["clip_config"].parent)
    assert again == test_models
    assert test_models["clip_checkpoint"].stat().st_mtime_ns == before


def test_resolves_explicit_checkpoint_as_path(test_models):
    resolved = ModelRegistry(tiny_config(test_models)).resolve("clip")
    assert resolved.source == "path"
    assert resolved.space == "clip"
    assert Path(resolved.location) == test_models["clip_checkpoint"].resolve()
    assert resolved.extra["model"] == "tiny-clip"


def test_encoder_shape_and_identity(encoder):
    assert encoder.space == "clip"
    assert encoder.dim == 32


def test_images_embed_unit_norm_and_deterministic(encoder):
    images = [photo(1), photo(2, size=(300, 200)), checkerboard()]
    first = encoder.embed_items(images)
    second = encoder.embed_items(images)
    assert_unit_rows(first, 3, 32)
    np.testing.assert_array_equal(first, second)


def test_different_images_differ_and_batching_does_not_change_rows(encoder):
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    rows = encoder.embed_items([red, checkerboard(), red])
    assert not np.allclose(rows[0], rows[1], atol=1e-3)
    np.testing.assert_allclose(rows[0], rows[2], atol=1e-6)
    alone = encoder.embed_items([checkerboard()])
    np.testing.assert_allclose(alone[0], rows[1], atol=1e-5)


def test_more_images_than_one_batch(encoder):
    from searchengine.encoders import clip

    images = [photo(seed) for seed in range(clip.BATCH + 3)]
    rows = encoder.embed_items(images)
    assert_unit_rows(rows, clip.BATCH + 3, 32)
    np.testing.assert_allclose(rows[-1], encoder.embed_items([images[-1]])[0], atol=1e-5)


def test_text_queries_embed(encoder):
    rows = encoder.embed_queries(["a dog on the beach", "a red car", "a dog on the beach"])
    assert_unit_rows(rows, 3, 32)
    assert not np.allclose(rows[0], rows[1], atol=1e-3)
    np.testing.assert_allclose(rows[0], rows[2], atol=1e-6)
    np.testing.assert_array_equal(
        rows, encoder.embed_queries(["a dog on the beach", "a red car", "a dog on the beach"])
    )


def test_empty_inputs_give_empty_rows(encoder):
    assert encoder.embed_items([]).shape == (0, 32)
    assert encoder.embed_queries([]).shape == (0, 32)


def test_forward_pass_can_be_timed_apart_from_preprocessing(encoder):
    images = [photo(5), checkerboard()]
    batch = encoder.preprocess_batch(images)
    assert tuple(batch.shape) == (2, 3, 64, 64)
    np.testing.assert_allclose(
        encoder.forward_tensors(batch), encoder.embed_items(images), atol=1e-6
    )


def test_missing_checkpoint_says_what_was_tried(test_models, tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    registry = ModelRegistry(tiny_config(test_models, clip_pretrained=str(missing)))
    with pytest.raises(ModelUnavailable) as caught:
        registry.encoder("clip")
    message = str(caught.value)
    assert "\n" not in message
    assert "tried:" in message and str(missing) in message
    assert "--clip-pretrained" in message
    assert registry.error("clip") == message
    assert not registry.available("clip")


def test_missing_model_config_json(test_models, tmp_path):
    config = tiny_config(test_models)
    config.models["clip"] = str(tmp_path / "absent.json")
    with pytest.raises(ModelUnavailable, match="absent.json"):
        ModelRegistry(config).encoder("clip")


def test_unknown_model_name(test_models):
    config = tiny_config(test_models)
    config.models["clip"] = "ViT-Nope-99"
    with pytest.raises(ModelUnavailable, match="ViT-Nope-99"):
        ModelRegistry(config).resolve("clip")


def test_unknown_pretrained_tag_lists_known_tags(empty_caches):
    config = IndexConfig()
    config.clip_pretrained = "no_such_tag"
    with pytest.raises(ModelUnavailable) as caught:
        ModelRegistry(config).resolve("clip")
    assert "laion2b_s34b_b79k" in str(caught.value)
    assert "'no_such_tag' is not one" in str(caught.value)


def test_default_model_without_cache_or_download_is_unavailable(empty_caches):
    registry = ModelRegistry(IndexConfig())
    with pytest.raises(ModelUnavailable) as caught:
        registry.encoder("clip")
    message = str(caught.value)
    assert "ViT-B-32" in message and "laion2b_s34b_b79k" in message
    assert "Hugging Face and open_clip caches" in message
    assert "download (off" in message
    assert "--clip-pretrained" in message and "SEARCHENGINE_OFFLINE=1" in message


def test_default_model_found_in_hugging_face_cache(empty_caches, test_models):
    # The tag's weights as huggingface_hub lays them out; resolution must find them offline.
    commit = "0" * 40
    repo = empty_caches / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    shutil.copy(test_models["clip_checkpoint"], snapshot / "open_clip_pytorch_model.bin")
    resolved = ModelRegistry(IndexConfig()).resolve("clip")
    assert resolved.source == "cache"
    assert Path(resolved.location) == snapshot / "open_clip_pytorch_model.bin"
    assert resolved.extra["model"] == "ViT-B-32"


def test_default_model_found_in_open_clip_cache(empty_caches, test_models):
    # The `openai` tag is fetched by URL into open_clip's own folder, ~/.cache/clip.
    clip_cache = empty_caches.parent.parent / "clip"
    clip_cache.mkdir(parents=True)
    shutil.copy(test_models["clip_checkpoint"], clip_cache / "ViT-B-32.pt")
    resolved = ModelRegistry(IndexConfig(clip_pretrained="openai")).resolve("clip")
    assert resolved.source == "cache"
    assert Path(resolved.location) == clip_cache / "ViT-B-32.pt"
    assert resolved.extra["quick_gelu"] is True


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_torchscript_archive_in_open_clip_cache_is_not_taken(empty_caches, test_models):
    # OpenAI's own ViT-B-32.pt is a TorchScript archive, which the state-dict loader refuses.
    import json

    import open_clip
    import torch

    clip_cache = empty_caches.parent.parent / "clip"
    clip_cache.mkdir(parents=True)
    model = open_clip.CLIP(**json.loads(test_models["clip_config"].read_text())).eval()
    torch.jit.save(torch.jit.script(model), str(clip_cache / "ViT-B-32.pt"))
    with pytest.raises(ModelUnavailable, match="open_clip caches"):
        ModelRegistry(IndexConfig(clip_pretrained="openai")).resolve("clip")


def test_corrupt_checkpoint_is_unavailable_not_a_crash(test_models, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    registry = ModelRegistry(tiny_config(test_models, clip_pretrained=str(broken)))
    with pytest.raises(ModelUnavailable, match="failed to load"):
        registry.encoder("clip")
