"""Video end to end: scenes, sounds and speech come back as moments with correct time ranges
(tiny random CLIP/CLAP prove plumbing; the right scene is found because a photo and its own
frames are near-identical inputs, which any continuous model maps close together)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchengine import Engine, thumbnail
from tests.conftest import run_cli
from tests.speech_fixtures import make_speech, read_pcm
from tests.video_fixtures import make_slideshow

SCENES = ["Indoors/chalkboard.jpg", "Indoors/kitchen.jpg", "Nature/forest.jpg"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video") / "videos"
    root.mkdir()
    backgrounds = sample_dir / "images" / "scratch" / "Backgrounds"
    photos = []
    for rel in SCENES:
        found = backgrounds / rel
        if not found.exists():  # names differ between scratch versions: take any three
            found = sorted(backgrounds.rglob("*.jpg"))[len(photos) * 7]
        photos.append(found)
    images = [Image.open(p).convert("RGB") for p in photos]
    speech_wav = make_speech(
        root.parent / "speech.wav",
        "please remember to water the tomato plants in the greenhouse",
        lead_silence_s=5.0,
    )
    pcm = read_pcm(speech_wav, 48000)
    pcm = np.concatenate([pcm, np.zeros(max(0, 12 * 48000 - len(pcm)), np.float32)])
    show = make_slideshow(root / "three-scenes.mp4", images, 4.0, audio=pcm[: 12 * 48000])
    shutil.copy(sample_dir / "video" / "cockatoo.mp4", root / "cockatoo.mp4")
    data = (root / "cockatoo.mp4").read_bytes()
    (root / "broken.mp4").write_bytes(data[: len(data) // 2])
    (root / "noise.mkv").write_bytes(bytes(range(256)) * 50)
    return {"root": root, "show": show, "photos": photos}


@pytest.fixture(scope="module")
def index(videos, test_models, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vidx") / "index"
    with Engine(
        folder,
        create=True,
        models={"clip": str(test_models["clip_config"]), "clap": str(test_models["clap"])},
        clip_pretrained=str(test_models["clip_checkpoint"]),
    ) as eng:
        summary = eng.index([videos["root"]])
        assert summary.failed == 2 and summary.pending == 0
    return folder


def test_each_photo_finds_its_scene_time_range(videos, index):
    with Engine(index) as eng:
        for i, photo in enumerate(videos["photos"]):
            hits = eng.similar(photo, k=2, types=["video"])
            assert hits[0].path.endswith("three-scenes.mp4")
            frame = next(s for s in hits[0].segments if s.kind == "frame")
            assert frame.start >= 4 * i - 0.3 and frame.end <= 4 * (i + 1) + 0.3
            assert frame.end - frame.start >= 3.5  # the whole scene, merged into one range


def test_speech_in_a_video_is_found_at_its_moment(index):
    with Engine(index) as eng:
        hit = eng.search("water the tomato plants", k=1, types=["video"])[0]
        assert hit.path.endswith("three-scenes.mp4") and hit.type == "video"
        speech = next(s for s in hit.segments if s.kind == "speech")
        assert "tomato" in speech.text.lower()
        assert 4.0 <= speech.start <= 6.5


def test_real_clip_indexes_frames_and_sounds(index):
    with Engine(index) as eng:
        status = eng.status()
        assert status["types"]["video"]["indexed"] == 2
        assert status["types"]["video"]["failed"] == 2
        rows = eng.catalog.segment_rows(
            eng.catalog.vector_ids("clip").tolist() + eng.catalog.vector_ids("clap").tolist()
        ).values()
        bird = [r for r in rows if r.path.endswith("cockatoo.mp4")]
        frames = sorted((r.start, r.end) for r in bird if r.kind == "frame")
        sounds = [r for r in bird if r.kind == "sound"]
        assert frames[0][0] == 0.0 and 13.0 <= frames[-1][1] <= 15.0
        assert 2 <= len(frames) <= 8  # a few frames, not one per video frame
        assert len(sounds) >= 2
        hits = eng.search("a bird", k=3, types=["video"])
        assert all(s.start is not None for h in hits for s in h.segments)


def test_thumbnail_writes_the_frame_of_the_moment(videos, tmp_path):
    photos = [
        np.asarray(Image.open(p).convert("RGB").resize((32, 24))).astype(float)
        for p in videos["photos"]
    ]
    for i, at in enumerate((2.0, 6.0, 10.0)):
        out = thumbnail(videos["show"], tmp_path / f"t{i}.jpg", at=at)
        got = np.asarray(Image.open(out).convert("RGB").resize((32, 24))).astype(float)
        distances = [np.abs(got - p).mean() for p in photos]
        assert int(np.argmin(distances)) == i
    res = run_cli("thumb", str(videos["show"]), "--at", "6", "-o", str(tmp_path / "c.jpg"))
    assert res.returncode == 0 and (tmp_path / "c.jpg").stat().st_size > 0
    res = run_cli("thumb", str(videos["show"]), "--at", "99", "-o", str(tmp_path / "x.jpg"))
    assert res.returncode == 2 and "cannot take a frame" in res.stderr
