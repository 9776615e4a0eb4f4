"""A small mixed library for the server's tests: real-text documents, scratch photos, a
freedesktop sound and a three-scene slideshow video; indexed once per test session with the
tiny random CLIP/CLAP (plumbing only) and the packaged MiniLM text model."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from searchengine import Engine
from tests.conftest import write_corpus
from tests.video_fixtures import make_slideshow

PHOTOS = ["Nature/wave.jpg", "Nature/canyon.jpg", "Indoors/kitchen.jpg"]
SOUND = "sound-theme-freedesktop/alarm-clock-elapsed.oga"
SCENE_S = 2.0
OLD_DOCS = {"garden.md": "2019-06-01", "astronomy.rst": "2020-03-01"}


def photo_paths(sample_dir: Path) -> list[Path]:
    backgrounds = sample_dir / "images" / "scratch" / "Backgrounds"
    found = []
    for rel in PHOTOS:
        path = backgrounds / rel
        if not path.exists():  # names differ between scratch versions: take others
            path = sorted(backgrounds.rglob("*.jpg"))[len(found) * 5]
        found.append(path)
    return found


def make_library(root: Path, sample_dir: Path) -> dict[str, Path]:
    write_corpus(root / "docs")
    shutil.copy(root / "docs" / "budget.txt", root / "docs" / "budget-copy.txt")  # a duplicate
    for name, day in OLD_DOCS.items():  # dated files, for date filters and sorting
        stamp = datetime.fromisoformat(day).timestamp()
        os.utime(root / "docs" / name, (stamp, stamp))
    photos = photo_paths(sample_dir)
    (root / "images").mkdir()
    for path in photos[:2]:
        shutil.copy(path, root / "images" / path.name)
    data = photos[2].read_bytes()
    (root / "images" / "broken.jpg").write_bytes(data[: len(data) // 3])  # fails, with a reason
    (root / "sounds").mkdir()
    sound = sample_dir / "sounds" / SOUND
    if not sound.exists():
        sound = sorted((sample_dir / "sounds").rglob("*.oga"))[0]
    shutil.copy(sound, root / "sounds" / "alarm-clock.oga")
    (root / "video").mkdir()
    frames = [Image.open(p).convert("RGB") for p in photos]
    make_slideshow(root / "video" / "three-scenes.mp4", frames, SCENE_S)
    return {"root": root, "photos": photos[0], "scene2": photos[1]}


def tiny_models(test_models: dict[str, Path]) -> dict:
    return {
        "models": {
            "clip": str(test_models["clip_config"]),
            "clap": str(test_models["clap"]),
            "speech": "off",
        },
        "clip_pretrained": str(test_models["clip_checkpoint"]),
    }


@pytest.fixture(scope="session")
def served_library(tmp_path_factory, sample_dir, test_models) -> dict[str, Path]:
    """The library and its index (built once; the API and browser tests share it)."""
    base = tmp_path_factory.getbasetemp() / "serve-library"
    info = {"root": base / "files", "index": base / "index"}
    if not (base / "done").exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        make_library(info["root"], sample_dir)
        with Engine(info["index"], create=True, **tiny_models(test_models)) as eng:
            summary = eng.index([info["root"]])
            assert summary.added == 12 and summary.failed == 1, summary.problems
        (base / "done").touch()
    info["scene2"] = photo_paths(sample_dir)[1]
    return info
