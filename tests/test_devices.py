"""Where the encoders run: CPU unless asked, CUDA on a Ray GPU worker (no GPU here: the
choice and its fallback are tested, not a GPU run)."""

from __future__ import annotations

import numpy as np
import pytest

from searchengine.cluster import actor_options
from searchengine.encoders.base import torch_device


def test_cpu_unless_asked_and_cuda_without_a_gpu_falls_back(monkeypatch):
    import torch

    monkeypatch.delenv("SEARCHENGINE_DEVICE", raising=False)
    assert torch_device() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for wanted in ("cuda", "auto", " CUDA "):
        monkeypatch.setenv("SEARCHENGINE_DEVICE", wanted)
        assert torch_device() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("SEARCHENGINE_DEVICE", "auto")
    assert torch_device() == "cuda"
    monkeypatch.setenv("SEARCHENGINE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="SEARCHENGINE_DEVICE wants one of cpu, cuda, auto"):
        torch_device()


def test_gpu_actors_share_the_cluster_gpus_and_run_on_cuda():
    cpu_only = actor_options({"CPU": 4.0}, 4)
    assert cpu_only["num_cpus"] == 1 and "num_gpus" not in cpu_only
    # one thread each: N actors on a node do not each take all of its cores
    assert cpu_only["runtime_env"] == {"env_vars": {"SEARCHENGINE_THREADS": "1"}}
    shared = actor_options({"CPU": 8.0, "GPU": 2.0}, 4)
    assert shared["num_gpus"] == 0.5
    assert shared["runtime_env"] == {
        "env_vars": {"SEARCHENGINE_THREADS": "1", "SEARCHENGINE_DEVICE": "cuda"}
    }
    assert actor_options({"CPU": 2.0, "GPU": 4.0}, 2)["num_gpus"] == 1.0


def test_encoders_asked_for_cuda_without_a_gpu_give_the_cpu_vectors(monkeypatch, test_models):
    """The device plumbing leaves CPU vectors unchanged (same rows with and without it)."""
    from searchengine.encoders import clap

    location = str(test_models["clap"])
    monkeypatch.delenv("SEARCHENGINE_DEVICE", raising=False)
    waves = [np.sin(np.linspace(0, 200, 48_000)).astype(np.float32)]
    plain = clap.ClapEncoder(location)
    monkeypatch.setenv("SEARCHENGINE_DEVICE", "cuda")
    asked = clap.ClapEncoder(location)
    import torch

    assert asked.device == ("cuda" if torch.cuda.is_available() else "cpu")
    np.testing.assert_allclose(plain.embed_items(waves), asked.embed_items(waves), atol=1e-5)
    np.testing.assert_allclose(
        plain.embed_queries(["a dog"]), asked.embed_queries(["a dog"]), atol=1e-5
    )
