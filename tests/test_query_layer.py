"""Query layer: filters inside retrieval keep pages full, dates and durations, minimum
score, negative and example-augmented queries, diversity, calibration, scores and reasons."""

from __future__ import annotations

import json
import os
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchengine import Engine, UserError
from searchengine.calibration import fit_space
from tests.conftest import run_cli


def sine_wav(path: Path, seconds: float, freq: float = 440.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(pcm.tobytes())
    return path


def set_mtime(path: Path, day: str) -> None:
    ts = datetime.fromisoformat(day).timestamp()
    os.utime(path, (ts, ts))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, test_models) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mixed") / "lib"
    (root / "keep").mkdir(parents=True)
    (root / "other").mkdir()
    for i in range(12):  # weakly related to the query, inside the filter
        (root / "keep" / f"k{i:02d}.txt").write_text(f"Minutes of club meeting {i}: chess rules.")
        set_mtime(root / "keep" / f"k{i:02d}.txt", f"2021-03-{i + 1:02d}")
    for i in range(18):  # strongly related, outside the filter
        (root / "other" / f"o{i:02d}.txt").write_text(
            f"Quarterly budget meeting {i}: spending on travel and payroll was reviewed."
        )
        set_mtime(root / "other" / f"o{i:02d}.txt", "2023-06-15")
    rng = np.random.default_rng(0)
    for i in range(6):
        img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        exif = Image.Exif()
        exif[0x8769] = {0x9003: f"2019:0{i + 1}:10 12:00:00"}  # DateTimeOriginal
        img.save(root / f"photo{i}.jpg", exif=exif)
    for secs in (2, 12, 30):
        sine_wav(root / f"tone{secs:02d}s.wav", secs, freq=200.0 + secs * 10)
    index = root.parent / "index"
    with Engine(
        index,
        create=True,
        models={
            "clip": str(test_models["clip_config"]),
            "clap": str(test_models["clap"]),
            "speech": "off",
        },
        clip_pretrained=str(test_models["clip_checkpoint"]),
    ) as eng:
        summary = eng.index([root])
        assert summary.failed == 0 and summary.pending == 0
    return root, index


def names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def test_narrow_path_filter_still_fills_the_page(mixed):
    _, index = mixed
    with Engine(index) as eng:
        hits = eng.search("budget meeting", k=10, path="keep/*")
        assert len(hits) == 10 and all(n.startswith("k") for n in names(hits))
        assert len(eng.search("budget meeting", k=5, types=["image"])) == 5


def test_dates_use_exif_for_photos_and_mtime_otherwise(mixed):
    _, index = mixed
    with Engine(index) as eng:
        photos = eng.search(
            "a picture", k=10, types=["image"], after="2019-03-01", before="2019-05-01"
        )
        assert sorted(names(photos)) == ["photo2.jpg", "photo3.jpg"]
        docs = eng.search("meeting", k=50, after="2021-03-05", before="2021-03-08")
        assert sorted(names(docs)) == ["k04.txt", "k05.txt", "k06.txt"]
        with pytest.raises(UserError, match="date like"):
            eng.search("meeting", after="last tuesday")


def test_duration_filters_apply_to_audio(mixed):
    _, index = mixed
    with Engine(index) as eng:
        longer = eng.search("a tone", k=10, types=["audio"], min_duration=10)
        assert sorted(names(longer)) == ["tone12s.wav", "tone30s.wav"]
        short = eng.search("a tone", k=10, max_duration=5)
        assert names(short) == ["tone02s.wav"]


def test_min_score_drops_weak_hits_and_scores_explain_themselves(mixed):
    _, index = mixed
    with Engine(index) as eng:
        everything = eng.search("quarterly budget meeting", k=40)
        strong = eng.search("quarterly budget meeting", k=40, min_score=0.3)
        assert 0 < len(strong) < len(everything)
        assert all(h.score >= 0.3 for h in strong)
        assert all(0.0 <= h.score <= 1.0 and h.reason for h in everything)
        assert "text similarity" in strong[0].reason and "keywords" in strong[0].reason


def test_negative_words_steer_away(tmp_path):
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "crowd.txt").write_text("A beach crowded with people swimming and playing volleyball.")
    (docs / "empty.txt").write_text("A deserted beach at sunset, waves on the empty sand.")
    with Engine(tmp_path / "i", create=True) as eng:
        eng.index([docs])
        plain = {
            n: h.score
            for n, h in zip(names(eng.search("beach", k=2)), eng.search("beach", k=2), strict=True)
        }
        steered = eng.search("beach", k=2, negative="people and crowds")
        assert names(steered)[0] == "empty.txt"
        assert {Path(h.path).name: h.score for h in steered}["crowd.txt"] < plain["crowd.txt"]


def test_example_file_joins_the_query(mixed, tmp_path):
    root, index = mixed
    with Engine(index) as eng:
        example = root / "photo4.jpg"
        only = eng.search("", k=3, like=example, types=["image"], include_self=True)
        assert names(only)[0] == "photo4.jpg"
        both = eng.search("a picture", k=3, like=example, types=["image"], include_self=True)
        assert names(both)[0] == "photo4.jpg"
        # without include_self the example is left out and the page stays full
        liked = eng.search("a picture", k=3, like=example)
        assert "photo4.jpg" not in names(liked) and len(liked) == 3
        with pytest.raises(UserError):
            eng.search("", k=3)


def test_near_duplicates_do_not_fill_the_page(tmp_path):
    docs = tmp_path / "d"
    docs.mkdir()
    texts = {
        "a1.txt": "The quarterly budget meeting reviewed spending on travel and payroll.",
        "a2.txt": "The quarterly budget meeting reviewed the spending on travel and payroll!",
        "a3.txt": "Quarterly budget meeting: we reviewed spending on travel and on payroll.",
        "b.txt": "At the finance meeting the team agreed next year's budget for new laptops.",
        "c.txt": "Our garden has tomatoes and beans this summer.",
    }
    for name, body in texts.items():
        (docs / name).write_text(body)
    with Engine(tmp_path / "i", create=True) as eng:
        eng.index([docs])
        raw = names(eng.search("budget meeting", k=4, diverse=False))
        diverse = names(eng.search("budget meeting", k=4))
    assert raw.index("b.txt") == 3
    assert diverse.index("b.txt") == 1 and set(diverse) == set(raw)


def test_calibration_fit_is_the_median_cosine_of_unrelated_pairs():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(500, 16)).astype(np.float32) + 0.5  # all vectors lean one way
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    probes = rng.normal(size=(20, 16)).astype(np.float32) + 0.5
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    lo = fit_space(probes, rows)
    assert lo == pytest.approx(float(np.median(probes @ rows.T)))
    assert 0.15 < lo < 0.9  # the shared lean is what "unrelated" scores on this index


def test_calibration_is_fitted_and_stored_for_big_enough_spaces(tmp_path):
    docs = tmp_path / "d"
    docs.mkdir()
    for i in range(220):
        (docs / f"n{i}.txt").write_text(f"Note {i} about topic {i % 17} and item {i * 3}.")
    with Engine(tmp_path / "i", create=True) as eng:
        eng.index([docs])
        fit = json.loads((tmp_path / "i" / "calibration.json").read_text())["text"]
        assert fit["vectors"] == 220 and -1 < fit["lo"] < 1
        lo, hi = eng.calibration()["text"]
        assert lo == fit["lo"] and hi - lo == pytest.approx(0.7)  # the family's span


def test_cli_filters_and_errors(mixed):
    _, index = mixed
    res = run_cli(
        "search",
        "meeting",
        "--index",
        str(index),
        "--path",
        "keep/*",
        "--after",
        "2021-03-10",
        "--json",
        "-k",
        "20",
    )
    assert res.returncode == 0, res.stderr
    assert sorted(Path(h["path"]).name for h in json.loads(res.stdout)) == [
        "k09.txt",
        "k10.txt",
        "k11.txt",
    ]
    res = run_cli("search", "tone", "--index", str(index), "--min-duration", "-3")
    assert res.returncode == 2 and "zero or more" in res.stderr
