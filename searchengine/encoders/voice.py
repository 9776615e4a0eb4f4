"""The `voice` space: who speaks. Resemblyzer's GE2E speaker encoder (256-d, Apache-2.0).

The weights (`pretrained.pt`, 17 MB) ship inside the `resemblyzer` wheel. Importing that
package pulls librosa and webrtcvad at import time, so the wheel is only *located*
(`importlib.util.find_spec` does not run it) and the small network (3-layer LSTM, a linear
layer, ReLU, L2 norm) is rebuilt here with the same parameter names; the mel filterbank is
librosa's (Slaney scale and norm, power spectrum, no log), written in numpy and checked
against librosa in tests/test_voice.py.

A voice segment is one stretch of speech of a few seconds (16 kHz mono PCM); it is cut into
1.6 s partials every 0.77 s (resemblyzer's defaults) and their embeddings are averaged.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from searchengine.config import IndexConfig
from searchengine.encoders.base import (
    Attempts,
    Resolved,
    load_or_unavailable,
    set_torch_threads,
    torch_device,
)
from searchengine.errors import ModelUnavailable

SPACE = "voice"
OFF = "off"
DEFAULT = "resemblyzer"
SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
PARTIAL_STEP = 77  # frames between partials: resemblyzer's rate 1.3 per second
TARGET_DBFS = -30.0
DIM = 256

HOW_TO_FIX = (
    "Install resemblyzer (pip install resemblyzer; its wheel ships the weights), pass --voice "
    "with a path to a GE2E checkpoint (.pt), or use --voice off."
)


def _packaged_weights() -> Path | None:
    """resemblyzer's pretrained.pt, located without importing the package."""
    try:
        spec = importlib.util.find_spec("resemblyzer")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "pretrained.pt"
        if path.is_file():
            return path
    return None


def resolve(config: IndexConfig) -> Resolved:
    """Find the speaker-encoder checkpoint without loading it; raises ModelUnavailable."""
    name = str(config.models.get(SPACE, DEFAULT)).strip()
    if not name or name.lower() == OFF:
        raise ModelUnavailable("voice embedding is off for this index")
    attempts = Attempts(SPACE, name)
    path = Path(name).expanduser()
    if path.is_file():
        return Resolved(SPACE, name, str(path.resolve()), "path")
    if path.is_dir() and (path / "pretrained.pt").is_file():
        return Resolved(SPACE, name, str((path / "pretrained.pt").resolve()), "path")
    attempts.tried.append(f"local path {path} (no checkpoint there)")
    if name in (DEFAULT, "resemblyzer/pretrained.pt", "ge2e"):
        shipped = _packaged_weights()
        if shipped is not None:
            return Resolved(SPACE, name, str(shipped), "package")
        attempts.tried.append("installed packages (resemblyzer is not installed)")
    raise attempts.fail(HOW_TO_FIX)


def describe(config: object, resolved: Resolved) -> tuple[dict[str, str], dict[str, Path]]:
    """The model is one checkpoint file; the architecture is fixed (GE2E, 3x256 LSTM)."""
    return {"arch": "ge2e-lstm3x256"}, {"weights.pt": Path(resolved.location)}


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = f >= min_log_hz
    mels[log_t] = min_log_mel + np.log(f[log_t] / min_log_hz) / logstep
    return mels


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = m >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (m[log_t] - min_log_mel))
    return freqs


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults (htk=False, norm='slaney')."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sr / 2]))[0], n_mels + 2)
    )
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


_MEL = mel_filterbank()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(
    np.float32
)  # periodic hann


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram, as resemblyzer's `wav_to_mel_spectrogram`
    (librosa.feature.melspectrogram: centred frames, zero padding, power 2, no log)."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    padded = np.pad(wav, N_FFT // 2, mode="constant")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(padded[idx] * _WINDOW, n=N_FFT, axis=1)) ** 2
    return (spec.astype(np.float32) @ _MEL.T).astype(np.float32)


def normalize_volume(wav: np.ndarray) -> np.ndarray:
    """Raise quiet speech to -30 dBFS (never lower it), as resemblyzer's preprocessing does."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    if rms <= 1e-8:
        return wav
    change = TARGET_DBFS - 20 * np.log10(rms)
    return wav * np.float32(10 ** (change / 20)) if change > 0 else wav


def partial_mels(wav: np.ndarray) -> np.ndarray:
    """(n, 160, 40) partial spectrograms covering the segment, sliced as resemblyzer's
    `compute_partial_slices(rate=1.3, min_coverage=0.75)` does (zero-padded at the end)."""
    wav = normalize_volume(np.asarray(wav, dtype=np.float32).reshape(-1))
    n_frames = int(np.ceil((len(wav) + 1) / HOP))
    steps = max(1, n_frames - PARTIAL_FRAMES + PARTIAL_STEP + 1)
    starts = list(range(0, steps, PARTIAL_STEP))
    last = starts[-1] * HOP
    if len(starts) > 1 and (len(wav) - last) / (PARTIAL_FRAMES * HOP) < 0.75:
        starts.pop()
    need = (starts[-1] + PARTIAL_FRAMES) * HOP
    if need >= len(wav):
        wav = np.pad(wav, (0, need - len(wav)))
    mel = mel_spectrogram(wav)
    return np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])


class VoiceEncoder:
    """A loaded GE2E network; embeds 16 kHz speech segments into the `voice` space."""

    space = SPACE
    dim = DIM
    sample_rate = SAMPLE_RATE

    def __init__(self, location: str, name: str = "") -> None:
        import torch
        from torch import nn

        set_torch_threads()

        class _GE2E(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(N_MELS, DIM, 3, batch_first=True)
                self.linear = nn.Linear(DIM, DIM)
                self.relu = nn.ReLU()

            def forward(self, mels: torch.Tensor) -> torch.Tensor:
                _, (hidden, _) = self.lstm(mels)
                raw = self.relu(self.linear(hidden[-1]))
                return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

        self.name = name or location
        self.location = location
        checkpoint = torch.load(location, map_location="cpu", weights_only=True)
        state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ValueError("not a GE2E checkpoint (no model_state)")
        self.net = _GE2E()
        missing, _unexpected = self.net.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"not a GE2E checkpoint (missing {', '.join(missing[:3])})")
        self.device = torch_device()
        self.net.eval().to(self.device)
        self._torch = torch
        self._lock = threading.Lock()

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        raise ModelUnavailable("the voice space is queried with a recording, not with text")

    def embed_items(self, payloads: list[Any], batch: int = 64) -> np.ndarray:
        """Speech segments (mono float32 16 kHz) -> L2-normalised (n, 256) rows."""
        torch = self._torch
        parts = [partial_mels(np.asarray(p, dtype=np.float32)) for p in payloads]
        if not parts:
            return np.zeros((0, DIM), dtype=np.float32)
        owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
        stacked = np.concatenate(parts)
        rows = []
        # An LSTM step is a small matrix product: more threads only spin against each other
        # (measured 20x slower with 2 threads on a busy 2-core machine), so one thread here.
        before = torch.get_num_threads()
        with self._lock, torch.inference_mode():
            torch.set_num_threads(1)
            try:
                for i in range(0, len(stacked), batch):
                    mels = torch.from_numpy(stacked[i : i + batch]).to(self.device)
                    rows.append(self.net(mels).cpu().numpy())
            finally:
                torch.set_num_threads(before)
        partial = np.concatenate(rows)
        out = np.zeros((len(payloads), DIM), dtype=np.float32)
        np.add.at(out, owner, partial)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)


def load(resolved: Resolved) -> VoiceEncoder:
    return load_or_unavailable(
        "voice", resolved, lambda: VoiceEncoder(resolved.location, resolved.name)
    )


MIN_PIECE_S = 0.5  # shorter speech says too little about a voice
MAX_PIECE_S = 3.0  # longer stretches are cut, so a turn change costs at most this much
MERGE_GAP_S = 0.3  # pauses shorter than this stay inside one piece


def speech_spans(pcm: np.ndarray) -> list[tuple[int, int]]:
    """Sample ranges where Silero VAD (shipped in faster-whisper, offline) hears speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = np.ascontiguousarray(np.asarray(pcm, dtype=np.float32).reshape(-1))
    if audio.size < SAMPLE_RATE // 10 or not np.any(audio):
        return []
    options = VadOptions(threshold=0.5, min_silence_duration_ms=300, speech_pad_ms=100)
    found = get_speech_timestamps(audio, options)
    spans: list[tuple[int, int]] = []
    for ts in found:
        start, end = int(ts["start"]), int(ts["end"])
        if spans and start - spans[-1][1] < MERGE_GAP_S * SAMPLE_RATE:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def voice_pieces(pcm: np.ndarray, offset: float = 0.0) -> list[tuple[float, float, np.ndarray]]:
    """(start_s, end_s, samples) of each 0.5-3 s piece of continuous speech in one chunk of
    16 kHz PCM; `offset` is the chunk's start in the file. Silence and music give none."""
    audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
    out: list[tuple[float, float, np.ndarray]] = []
    for start, end in speech_spans(audio):
        length = (end - start) / SAMPLE_RATE
        if length < MIN_PIECE_S:
            continue
        n = max(1, int(np.ceil(length / MAX_PIECE_S)))
        bounds = np.linspace(start, end, n + 1).astype(int)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            out.append(
                (
                    float(round(offset + a / SAMPLE_RATE, 2)),
                    float(round(offset + b / SAMPLE_RATE, 2)),
                    audio[a:b].copy(),
                )
            )
    return out
