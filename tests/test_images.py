"""Images end to end: pending without CLIP weights, filled in later, search and similar with a
tiny random CLIP (plumbing only: a random model proves nothing about relevance)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from searchengine import Engine
from searchengine.encoders import clip as clip_module
from searchengine.encoders import text as text_module
from tests.conftest import run_cli

PHOTOS = ["scikit-learn/china.jpg", "scikit-learn/flower.jpg", "scikit-image/astronaut.png",
          "scikit-image/coffee.png", "scikit-image/rocket.jpg"]


@pytest.fixture
def library(tmp_path: Path, sample_dir: Path) -> Path:
    root = tmp_path / "library"
    (root / "photos").mkdir(parents=True)
    for rel in PHOTOS:
        shutil.copy(sample_dir / "images" / rel, root / "photos" / Path(rel).name)
    (root / "notes.txt").write_text("Shopping list: coffee beans, flowers for the table.")
    (root / "trip.md").write_text("Our trip to China: the Great Wall and a rocket museum.")
    return root


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"clip": 0, "text": 0}

    def counting(cls, space):
        original = cls.embed_items

        def wrapped(self, payloads):
            counts[space] += len(payloads)
            return original(self, payloads)

        monkeypatch.setattr(cls, "embed_items", wrapped)

    counting(clip_module.ClipEncoder, "clip")
    counting(text_module.TextEncoder, "text")
    return counts


def tiny(test_models: dict[str, Path]) -> dict:
    return {"models": {"clip": str(test_models["clip_config"])},
            "clip_pretrained": str(test_models["clip_checkpoint"])}


def test_without_weights_images_wait_as_pending_then_fill_in(library, index_dir, test_models,
                                                             calls):
    with Engine(index_dir, create=True) as eng:  # default ViT-B-32 weights are not here
        summary = eng.index([library])
        assert summary.pending == 5 and summary.failed == 0
        assert len(summary.notes) == 1 and "clip model" in summary.notes[0]
        assert "--clip-pretrained" in summary.notes[0]
        status = eng.status()
        assert status["types"]["image"]["pending"] == 5
        assert status["types"]["text"]["indexed"] == 2
        assert not status["spaces"]["clip"]["available"]
        assert eng.search("great wall trip", k=1)[0].path.endswith("trip.md")
        by_name = eng.search("astronaut", k=3, types=["image"])
        assert [Path(h.path).name for h in by_name] == ["astronaut.png"]
        again = eng.index([library])  # still no weights: nothing re-decoded, nothing lost
        assert again.unchanged == 7 and again.pending == 0
    calls.update(clip=0, text=0)
    with Engine(index_dir, **tiny(test_models)) as eng:
        summary = eng.index([library])
        assert summary.changed == 5 and summary.pending == 0
        assert calls == {"clip": 5, "text": 0}
        assert eng.status()["types"]["image"] == {
            "indexed": 5, "pending": 0, "failed": 0, "skipped": 0}
        assert eng.status()["spaces"]["clip"]["vectors"] == 5


def test_similar_returns_the_photo_itself_first(library, index_dir, test_models, sample_dir):
    with Engine(index_dir, create=True, **tiny(test_models)) as eng:
        eng.index([library])
        for name in ("china.jpg", "coffee.png"):
            hits = eng.similar(library / "photos" / name, k=3, include_self=True)
            assert Path(hits[0].path).name == name
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert hits[0].score >= hits[1].score
        outside = sample_dir / "images" / "scikit-image" / "chelsea.png"  # not indexed
        hits = eng.similar(outside, k=2, types=["image"])
        assert len(hits) == 2 and all(h.type == "image" for h in hits)


def test_text_query_returns_images_and_mixed_results(library, index_dir, test_models):
    with Engine(index_dir, create=True, **tiny(test_models)) as eng:
        eng.index([library])
        images = eng.search("a photo of a cup of coffee", k=5, types=["image"])
        assert len(images) == 5 and {h.type for h in images} == {"image"}
        assert all(0.0 <= h.score <= 1.0 for h in images)
        assert all(h.segments == [] for h in images)  # an image hit has no time or offsets
        mixed = eng.search("coffee", k=7)
        assert {h.type for h in mixed} == {"image", "text"}


def test_changing_the_clip_model_re_embeds_images_only(library, index_dir, test_models,
                                                       tmp_path, calls):
    with Engine(index_dir, create=True, **tiny(test_models)) as eng:
        eng.index([library])
    other = tmp_path / "other-tiny.pt"
    state = torch.load(test_models["clip_checkpoint"], map_location="cpu", weights_only=True)
    torch.save({k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
                for k, v in state.items()}, other)
    calls.update(clip=0, text=0)
    with Engine(index_dir, clip_pretrained=str(other)) as eng:
        summary = eng.index([library])
        assert summary.reembedded == 5 and summary.changed == 0  # only the clip segments
        assert calls == {"clip": 5, "text": 0}
        assert eng.status()["spaces"]["clip"]["model"].endswith("other-tiny.pt")
    calls.update(clip=0, text=0)
    with Engine(index_dir) as eng:  # the choice is stored in the index
        assert eng.index([library]).unchanged == 7
        assert calls == {"clip": 0, "text": 0}


def test_cli_models_index_and_similar(library, index_dir, test_models):
    res = run_cli("models", "--index", str(index_dir), "--json")
    assert res.returncode == 0
    assert {r["space"]: r["available"] for r in json.loads(res.stdout)}["clip"] is False
    res = run_cli("index", str(library), "--index", str(index_dir), "--json",
                  "--clip", str(test_models["clip_config"]),
                  "--clip-pretrained", str(test_models["clip_checkpoint"]))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["added"] == 7
    res = run_cli("models", "--index", str(index_dir), "--json")
    assert {r["space"]: r["available"] for r in json.loads(res.stdout)}["clip"] is True
    res = run_cli("similar", str(library / "photos" / "flower.jpg"), "--index",
                  str(index_dir), "--json", "-k", "2", "--include-self")
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert hits[0]["path"].endswith("flower.jpg") and hits[0]["type"] == "image"
    assert "start" not in json.dumps(hits[0]["segments"])
