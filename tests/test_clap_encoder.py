"""The `clap` space through the registry, on a tiny random CLAP written with save_pretrained
(model + processor) by scripts/make_test_models.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from searchengine.config import IndexConfig
from searchengine.encoders.registry import ModelRegistry
from searchengine.errors import ModelUnavailable

RATE = 48000


def tiny_config(models: dict[str, Path]) -> IndexConfig:
    config = IndexConfig()
    config.models["clap"] = str(models["clap"])
    return config


@pytest.fixture(scope="module")
def encoder(test_models):
    return ModelRegistry(tiny_config(test_models)).encoder("clap")


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.RandomState(seed).randn(int(seconds * RATE)) * 0.1).astype(np.float32)


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE), dtype=np.float32) / RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def assert_unit_rows(rows: np.ndarray, n: int, dim: int) -> None:
    assert rows.shape == (n, dim)
    assert rows.dtype == np.float32
    assert rows.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_script_writes_a_save_pretrained_folder(test_models):
    from transformers import ClapModel, ClapProcessor

    folder = test_models["clap"]
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    processor = ClapProcessor.from_pretrained(folder, local_files_only=True)
    assert processor.feature_extractor.sampling_rate == RATE
    assert processor.tokenizer("a dog barking")["input_ids"][0] == 0  # <s>
    model = ClapModel.from_pretrained(folder, local_files_only=True)
    assert model.config.projection_dim == 24


def test_resolves_folder_as_path(test_models):
    resolved = ModelRegistry(tiny_config(test_models)).resolve("clap")
    assert resolved.source == "path"
    assert Path(resolved.location) == test_models["clap"].resolve()


def test_encoder_identity(encoder):
    assert encoder.space == "clap"
    assert encoder.dim == 24
    assert encoder.sample_rate == RATE


def test_short_and_long_audio_embed_deterministically(encoder):
    clips = [noise(1.0, seed=1), noise(12.0, seed=2)]
    first = encoder.embed_items(clips)
    second = encoder.embed_items(clips)
    assert_unit_rows(first, 2, 24)
    np.testing.assert_array_equal(first, second)
    # A payload's row does not depend on what else is in the batch.
    alone = encoder.embed_items([clips[1]])
    np.testing.assert_allclose(alone[0], first[1], atol=1e-5)


def test_long_audio_covers_every_part(encoder):
    # 12 s is longer than the model's 10 s window: changing only its last 2 s must show.
    base = noise(12.0, seed=3)
    changed = base.copy()
    changed[-2 * RATE :] = tone(2.0, 880.0)
    rows = encoder.embed_items([base, changed])
    assert not np.allclose(rows[0], rows[1], atol=1e-4)


def test_different_sounds_differ(encoder):
    rows = encoder.embed_items([tone(2.0, 220.0), noise(2.0, seed=4), tone(2.0, 220.0)])
    assert not np.allclose(rows[0], rows[1], atol=1e-3)
    np.testing.assert_allclose(rows[0], rows[2], atol=1e-6)


def test_more_windows_than_one_batch(encoder, monkeypatch):
    from searchengine.encoders import clap

    monkeypatch.setattr(clap, "BATCH", 2)
    clips = [noise(0.5, seed=1), noise(12.0, seed=2), noise(0.5, seed=3)]  # 4 windows
    rows = encoder.embed_items(clips)
    assert_unit_rows(rows, 3, 24)
    np.testing.assert_allclose(rows[1], encoder.embed_items([clips[1]])[0], atol=1e-5)
    np.testing.assert_allclose(rows[-1], encoder.embed_items([clips[-1]])[0], atol=1e-5)


def test_empty_audio_does_not_crash(encoder):
    rows = encoder.embed_items([np.zeros(0, dtype=np.float32), noise(1.0, seed=5)])
    assert_unit_rows(rows, 2, 24)


def test_text_queries_embed(encoder):
    texts = ["a dog barking", "rain on a tin roof", "a dog barking"]
    rows = encoder.embed_queries(texts)
    assert_unit_rows(rows, 3, 24)
    assert not np.allclose(rows[0], rows[1], atol=1e-3)
    np.testing.assert_allclose(rows[0], rows[2], atol=1e-6)
    np.testing.assert_array_equal(rows, encoder.embed_queries(texts))


def test_empty_inputs_give_empty_rows(encoder):
    assert encoder.embed_items([]).shape == (0, 24)
    assert encoder.embed_queries([]).shape == (0, 24)


def test_forward_pass_can_be_timed_apart_from_features(encoder):
    clips = [noise(1.0, seed=6), tone(3.0, 440.0)]
    inputs = encoder.preprocess_batch(clips)
    assert inputs["input_features"].shape[0] == 2
    np.testing.assert_allclose(
        encoder.forward_tensors(inputs), encoder.embed_items(clips), atol=1e-6
    )


def test_missing_folder_says_what_was_tried(tmp_path):
    missing = tmp_path / "no-such-clap"
    config = IndexConfig()
    config.models["clap"] = str(missing)
    registry = ModelRegistry(config)
    with pytest.raises(ModelUnavailable) as caught:
        registry.encoder("clap")
    message = str(caught.value)
    assert "\n" not in message
    assert "tried:" in message and str(missing) in message
    assert "--clap" in message
    assert not registry.available("clap")


def test_default_model_without_cache_or_download_is_unavailable(empty_caches):
    registry = ModelRegistry(IndexConfig())
    with pytest.raises(ModelUnavailable) as caught:
        registry.encoder("clap")
    message = str(caught.value)
    assert "laion/clap-htsat-unfused" in message
    assert "Hugging Face cache" in message and "download (off" in message
    assert "SEARCHENGINE_OFFLINE=1" in message


def test_default_model_found_in_hugging_face_cache(empty_caches, test_models):
    # A snapshot laid out as huggingface_hub writes it is found offline and loads.
    commit = "1" * 40
    repo = empty_caches / "models--laion--clap-htsat-unfused"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(test_models["clap"], repo / "snapshots" / commit)
    registry = ModelRegistry(IndexConfig())
    resolved = registry.resolve("clap")
    assert resolved.source == "cache"
    assert Path(resolved.location) == repo / "snapshots" / commit
    rows = registry.encoder("clap").embed_queries(["a bird singing"])
    assert_unit_rows(rows, 1, 24)


def test_folder_without_a_model_is_unavailable_not_a_crash(tmp_path):
    empty = tmp_path / "empty-clap"
    empty.mkdir()
    config = IndexConfig()
    config.models["clap"] = str(empty)
    with pytest.raises(ModelUnavailable, match="failed to load"):
        ModelRegistry(config).encoder("clap")
