"""Audio: overlapping mono float32 windows for the `clap` space, streamed with PyAV.

Nothing here holds a whole file in memory: `pcm_chunks` decodes, downmixes and resamples
packet by packet into fixed-size chunks, `windows` cuts overlapping windows out of a rolling
buffer of those chunks, and `decode` hands both out lazily (`Decoded.stream` and
`Decoded.speech_source`), so an hours-long recording costs a few chunks of memory at a time.

Times are counted in output samples from the first decoded sample (start = 0), so window
times match positions in the PCM exactly. The same functions read the audio track of a video
container (`stream_index` picks the track; by default FFmpeg's "best" audio stream).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from searchengine.errors import DecodeError
from searchengine.types import Decoded, Segment

CLAP_RATE = 48_000
"""Sample rate the CLAP feature extractor expects."""

SPEECH_RATE = 16_000
"""Sample rate Whisper expects."""

BATCH = 16
"""Segments per list in `Decoded.stream`."""

MAX_BAD_PACKETS = 8
"""Consecutive undecodable packets after which the rest of a file is given up."""

MIN_SAMPLE_RATE = 1000
"""Sample rates below this are damage, not sound (telephone audio is 8 kHz): resampling a
1 Hz stream to 48 kHz turns each 4096-sample frame into 800 MB of PCM."""

# Errors PyAV/FFmpeg raise on damaged or unexpected data (FFmpegError subclasses carry
# ValueError/EOFError/OSError too); the resampler raises ValueError on odd frames.
_AV_ERRORS = (av.error.FFmpegError, ValueError, EOFError, OSError)
_MISSING = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What `probe` learns about a file's audio track."""

    duration: float
    """Seconds, from the stream (else container) header, or counted by decoding."""
    sample_rate: int
    channels: int
    codec: str
    stream_index: int = 0
    """Container-wide index of the audio stream (pass to `pcm_chunks` for a video's track)."""


def decode(path: str, config: Any) -> Decoded:
    """Decode an audio file lazily: `clap` windows in `stream`, 16 kHz PCM in `speech_source`.

    The file is probed here (header plus its first decodable frame), so an unreadable file,
    one without audio, or one without a single sample fails now with DecodeError; the PCM
    itself is only decoded while `stream` / `speech_source()` are consumed.
    """
    info = probe(path)
    window_s = float(config.audio_window_s)
    hop_s = float(config.audio_hop_s)
    meta = {
        "duration": info.duration,
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "codec": info.codec,
    }
    index = info.stream_index
    return Decoded(
        file_type="audio",
        segments=[],
        meta=meta,
        stream=_segment_batches(path, index, window_s, hop_s),
        speech_source=functools.partial(
            pcm_chunks, path, SPEECH_RATE, chunk_seconds=30.0, stream_index=index
        ),
    )


def _segment_batches(
    path: str, stream_index: int, window_s: float, hop_s: float
) -> Iterator[list[Segment]]:
    segments = (
        Segment(space="clap", kind="sound", start=start, end=end, payload=pcm)
        for start, end, pcm in windows(path, CLAP_RATE, window_s, hop_s, stream_index)
    )
    yield from _batched(segments, BATCH)


def _batched(items: Iterable[Segment], size: int) -> Iterator[list[Segment]]:
    batch: list[Segment] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- probing -----------------------------------------------------------------------------


def probe(path: str, stream_index: int | None = None) -> AudioInfo:
    """Duration, sample rate, channels and codec of the audio track; DecodeError if unusable.

    Besides the header, the first frame is decoded, so a file whose header is fine but whose
    data is not (or that has no samples at all) is caught here. When neither the stream nor
    the container records a duration, the whole track is decoded (streaming) to count it.
    Missing files raise the usual OSError (FileNotFoundError, PermissionError).
    """
    with _open(path) as container:
        stream = _audio_stream(container, stream_index)
        ctx = stream.codec_context
        codec = ctx.codec.canonical_name if ctx.codec is not None else ""
        sample_rate = int(ctx.sample_rate or 0)
        channels = int(ctx.layout.nb_channels) if ctx.layout is not None else 0
        reader = _FrameReader(container, stream)
        frames = iter(reader)
        first = next((f for f in frames if f.samples > 0), None)
        if first is None:
            raise DecodeError(_nothing_decoded(reader.error))
        sample_rate = sample_rate or int(first.sample_rate)
        channels = channels or int(first.layout.nb_channels)
        if sample_rate < MIN_SAMPLE_RATE:
            raise DecodeError(f"truncated or corrupt audio: sample rate of {sample_rate} Hz")
        duration = _header_duration(container, stream)
        if duration is None:  # count it: frames come and go, nothing is kept
            samples = first.samples + sum(f.samples for f in frames)
            duration = samples / float(first.sample_rate)
        index = int(stream.index)
    if sample_rate <= 0 or channels <= 0:
        raise DecodeError(f"truncated or corrupt audio: {sample_rate} Hz, {channels} channels")
    return AudioInfo(
        duration=float(duration),
        sample_rate=sample_rate,
        channels=channels,
        codec=codec,
        stream_index=index,
    )


def _header_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.duration > 0 and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


# --- decoding ----------------------------------------------------------------------------


def pcm_chunks(
    path: str,
    sample_rate: int,
    chunk_seconds: float = 30.0,
    stream_index: int | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (start_seconds, mono float32 PCM at `sample_rate`) chunks of `chunk_seconds`.

    Every chunk but the last holds exactly round(chunk_seconds * sample_rate) samples, and
    chunks follow each other without gap or overlap (start = samples before / sample_rate).
    Decoding streams packet by packet: memory stays about one chunk whatever the length.
    A file damaged part way (truncated, garbage) ends early with what decoded cleanly; if
    nothing at all decodes, DecodeError("truncated or corrupt audio: ...") is raised.
    `stream_index` is a container-wide stream index (see `AudioInfo.stream_index`).
    """
    if sample_rate <= 0 or chunk_seconds <= 0:
        raise ValueError("sample_rate and chunk_seconds must be positive")
    chunk_n = max(1, round(chunk_seconds * sample_rate))
    with _open(path) as container:
        stream = _audio_stream(container, stream_index)
        reader = _FrameReader(container, stream)
        buf = np.empty(chunk_n, dtype=np.float32)
        fill = 0
        emitted = 0  # samples yielded so far
        for pcm in _mono(reader, sample_rate):
            pos = 0
            while pos < len(pcm):
                take = min(chunk_n - fill, len(pcm) - pos)
                buf[fill : fill + take] = pcm[pos : pos + take]
                fill += take
                pos += take
                if fill == chunk_n:
                    yield emitted / sample_rate, _clean(buf)
                    emitted += chunk_n
                    buf = np.empty(chunk_n, dtype=np.float32)
                    fill = 0
        if fill:
            yield emitted / sample_rate, _clean(buf[:fill].copy())
            emitted += fill
        if emitted == 0:
            raise DecodeError(_nothing_decoded(reader.error))


def _mono(frames: Iterable[Any], sample_rate: int) -> Iterator[np.ndarray]:
    """Downmix + resample frames to packed mono float32, flushing the resampler at the end.

    A resampler is tied to its input's format, layout and rate, so a stream that changes
    any of them mid-way (it happens in broadcast recordings) gets a fresh one.
    """
    resampler = None
    key = None
    for frame in frames:
        if frame.samples <= 0 or frame.sample_rate < MIN_SAMPLE_RATE:
            continue  # nothing, or damage that would resample into gigabytes
        frame_key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if frame_key != key:
            if resampler is not None:
                yield from _arrays(_flush(resampler))
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            key = frame_key
        frame.pts = None  # times come from sample counts; odd pts must not upset swr
        try:
            out = resampler.resample(frame)
        except _AV_ERRORS:
            continue  # a malformed frame: drop it, keep the rest
        yield from _arrays(out)
    if resampler is not None:
        yield from _arrays(_flush(resampler))


def _flush(resampler: Any) -> list[Any]:
    try:
        return resampler.resample(None)
    except _AV_ERRORS:
        return []


def _arrays(frames: list[Any]) -> Iterator[np.ndarray]:
    for frame in frames:
        if frame.samples > 0:
            # packed mono float32: one plane; a view, copied into the chunk right away
            yield np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples)


def _clean(pcm: np.ndarray) -> np.ndarray:
    """No NaN/inf reaches an encoder (float WAVs can carry them)."""
    if not np.isfinite(pcm).all():
        np.nan_to_num(pcm, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    return pcm


class _FrameReader:
    """Decoded frames of one stream, stopping cleanly where the data goes bad.

    A demuxer error (truncated file) ends the stream after draining the decoder; a packet
    the decoder rejects is skipped, and MAX_BAD_PACKETS in a row end the stream. The first
    error is kept in `error` for the message when nothing decodes at all.
    """

    def __init__(self, container: Any, stream: Any) -> None:
        self.container = container
        self.stream = stream
        self.error: str | None = None

    def __iter__(self) -> Iterator[Any]:
        packets = self.container.demux(self.stream)
        bad = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return  # demux ends with empty packets that already drained the decoder
            except _AV_ERRORS as exc:
                self._note(exc)
                yield from self._drain()
                return
            try:
                frames = packet.decode()
            except _AV_ERRORS as exc:
                self._note(exc)
                bad += 1
                if bad >= MAX_BAD_PACKETS:
                    return
                continue
            bad = 0
            yield from frames

    def _drain(self) -> list[Any]:
        try:
            return self.stream.codec_context.decode(None)
        except _AV_ERRORS:
            return []

    def _note(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = _reason(exc)


# --- helpers -----------------------------------------------------------------------------


def _open(path: str) -> Any:
    try:
        return av.open(str(path), metadata_errors="replace")
    except _MISSING:
        raise
    except _AV_ERRORS as exc:
        raise DecodeError(f"truncated or corrupt audio: cannot open ({_reason(exc)})") from None


def _audio_stream(container: Any, stream_index: int | None) -> Any:
    if stream_index is not None:
        streams = [s for s in container.streams if s.index == stream_index]
        if not streams or streams[0].type != "audio":
            raise DecodeError(f"no audio stream at index {stream_index}")
        stream = streams[0]
    else:
        if not container.streams.audio:
            raise DecodeError("no audio stream")
        try:
            stream = container.streams.best("audio") or container.streams.audio[0]
        except _AV_ERRORS:
            stream = container.streams.audio[0]
    if stream.codec_context is None or stream.codec_context.codec is None:
        raise DecodeError("unsupported audio codec")
    return stream


def _nothing_decoded(error: str | None) -> str:
    if error:
        return f"truncated or corrupt audio: {error}"
    return "empty audio: no samples"


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words ("Invalid data found when processing input"), without the path."""
    text = getattr(exc, "strerror", None) if isinstance(exc, av.error.FFmpegError) else None
    text = str(text or exc or "")
    text = text.splitlines()[0].strip() if text else ""
    return text[:200] or type(exc).__name__


# --- windows -----------------------------------------------------------------------------


def windows(
    path: str,
    sample_rate: int,
    window_s: float,
    hop_s: float,
    stream_index: int | None = None,
) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield overlapping (start, end, mono float32 PCM) windows, streamed from `pcm_chunks`.

    Windows start at 0, hop, 2*hop, ... and hold window_s seconds. At the end, one shorter
    window runs from the next start to the true end of the audio, unless that tail already
    lies inside the previous window. A clip shorter than a window gives one window of its
    own length (no padding: the CLAP processor pads). 23 s with 10/5 gives (0, 10), (5, 15),
    (10, 20), (15, 23); 20 s gives (0, 10), (5, 15), (10, 20); 2 s gives (0, 2).
    """
    if window_s <= 0 or hop_s <= 0:
        raise ValueError("window_s and hop_s must be positive")
    win_n = max(1, round(window_s * sample_rate))
    hop_n = max(1, round(hop_s * sample_rate))
    buf = np.empty(0, dtype=np.float32)
    buf_start = 0  # sample offset of buf[0]
    next_start = 0  # sample offset of the next window
    last_end = 0  # end of the last window yielded
    total = 0  # samples seen so far
    chunk_s = max(30.0, window_s)
    for _, chunk in pcm_chunks(path, sample_rate, chunk_s, stream_index):
        total += len(chunk)
        buf = np.concatenate((buf, chunk)) if len(buf) else chunk
        while next_start + win_n <= total:
            lo = next_start - buf_start
            pcm = buf[lo : lo + win_n].copy()
            yield next_start / sample_rate, (next_start + win_n) / sample_rate, pcm
            last_end = next_start + win_n
            next_start += hop_n
        drop = min(next_start, total) - buf_start  # nothing before next_start is needed again
        if drop > 0:
            buf = buf[drop:].copy() if drop < len(buf) else np.empty(0, dtype=np.float32)
            buf_start += drop
    if next_start < total and total > last_end:
        lo = next_start - buf_start
        yield next_start / sample_rate, total / sample_rate, buf[lo:].copy()
