"""Real spoken audio for speech tests, synthesised offline with espeak-ng.

`make_speech` writes a 16-bit PCM WAV of a sentence, optionally after some silence;
`read_pcm` decodes any audio file to mono float32 PCM at 16 kHz with PyAV.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000


class EspeakMissing(RuntimeError):
    """espeak-ng is not installed, so no test speech can be made."""


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def make_speech(
    path: Path, text: str, lead_silence_s: float = 0.0, voice: str | None = None
) -> Path:
    """Speak `text` into a mono 16-bit WAV at `path`, after `lead_silence_s` seconds of silence;
    `voice` is an espeak-ng voice (`en+f4`, `en+m3`: different synthetic speakers)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakMissing(
            "espeak-ng is not installed; install it (`apt-get install -y espeak-ng`) "
            "to generate test speech"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run(
            [exe, "-s", "150", *(["-v", voice] if voice else []), "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        with wave.open(str(raw), "rb") as src:
            channels, width, rate = src.getnchannels(), src.getsampwidth(), src.getframerate()
            frames = src.readframes(src.getnframes())
    if width != 2:
        raise RuntimeError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit PCM")
    pad = b"\x00\x00" * channels * int(round(lead_silence_s * rate))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pad + frames)
    return path


def read_pcm(path: Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to mono float32 PCM in [-1, 1] at `rate` Hz (PyAV)."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    pieces: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                pieces.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            pieces.append(out.to_ndarray().reshape(-1))
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(pieces), dtype=np.float32)


def noise(seconds: float, level: float = 0.003, seed: int = 0) -> np.ndarray:
    """Quiet white noise (room tone) at 16 kHz: no speech in it."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    return (rng.standard_normal(n) * level).astype(np.float32)
