"""Videos: frames sampled at shot changes (and at most one every `every_s` seconds within a
shot) for the `clip` space, plus the sound track for `clap` and speech, decoded with PyAV.

Frames are judged on 32 x 32 thumbnails: a soft-binned 4x4x4 RGB colour histogram (total
variation distance, 0..1) plus the mean absolute difference of a 16 x 16 grey image (0..1).
Their sum is the *change score* of two frames:

- a **cut** is a change score of at least `CUT` between two frames examined `PROBE_S` apart,
  that is also `CUT_RATIO` times the mean score just before and after it. Fast motion and
  camera flashes raise their neighbours' scores too, a cut stands alone;
- within a shot a frame is emitted at most every `every_s` seconds, and only when it is not a
  **near duplicate** of the last emitted frame (histogram distance under `DUP_HIST` and grey
  difference under `DUP_PIX`), so a static scene yields one frame, not one per interval.

Two ways to walk a file, chosen per file (`sample_frames(mode="auto")`):

- *sequential* (short files, long GOPs, files without an index): decode every frame (frame
  and slice threads) and examine one every `PROBE_S`. Decoding dominates (about 2.3 ms a
  720p H.264 frame here, against 0.6 ms for a thumbnail), and an inter-coded frame needs its
  predecessors anyway, so the only real saving is skipping whole GOPs. Shots are exact;
- *seek* (files of at least `SEEK_MIN_DURATION` whose index puts keyframes at most
  `SEEK_MAX_GOP * step` apart, where step = min(every_s, `SEEK_MAX_STEP`)): seek to the
  keyframe before each multiple of the step and decode forward only to it, examining the
  frames decoded on the way. Cuts inside those stretches are exact. When the frames either
  side of a skipped stretch differ by a cut's score, the keyframes the index lists inside
  it are bisected (one intra frame decoded each) and the cut is placed at the first one
  that looks like the far side: within a GOP of the truth, exact when the encoder put a
  keyframe at the cut (x264's scene detection does). On footage full of motion those
  "cuts" are only big changes. Measured on a 56 s 720p H.264 clip (2 busy CPUs): keyframes
  every 2 s: sequential 2.3-2.9 s (1120 frames decoded); seek every 3 s 1.4-1.8 s (483
  frames); every_s=10 (5 s step) 1.0 s (320). Keyframes every ~12 s: seeking every 3 s
  still decodes 920 frames (2.5 s, no gain), so auto keeps sequential. MPEG-PS/TS and Ogg have
  no index; a seek that fails, decodes nothing or lands far from its target switches to
  sequential decoding.

Times are seconds from the container's start. A file that is damaged part-way yields the
frames before the damage and then ends: the iterators never raise for bad data, only `probe`
(and therefore `decode`) raises `DecodeError`, for a file with no readable video at all.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from searchengine.errors import DecodeError
from searchengine.types import Decoded, Segment

log = logging.getLogger(__name__)

MAX_SIDE = 512
"""Long side of emitted frames: CLIP needs 224 px, more only costs memory."""

BATCH = 16
"""Segments per list in `Decoded.stream`."""

CLAP_RATE = 48000
SPEECH_RATE = 16000

PROBE_S = 0.1
"""Spacing of the frames examined for shot changes: shot starts are exact to this."""

CUT = 0.25
"""Least change score (histogram distance + grey difference) of a cut. Between 1891 pairs of
different real photos (scratch backgrounds) the score is >= 0.30, median 0.75; within the
hand-held cockatoo clip, 0.1 s apart, 99 % of scores are < 0.30."""

CUT_RATIO = 2.5
"""A cut's score is also this many times the mean score of its two neighbours: the cockatoo's
fastest head turn scores 0.52 between neighbours of 0.28 and 0.23 (ratio 2.0, motion), a
camera flash scores high twice in a row (ratio <= 2)."""

DUP_HIST = 0.10
DUP_PIX = 0.04
"""Below both, a frame is a near duplicate of the last emitted one (re-encoded stills score
< 0.01; the cockatoo 3 s apart scores >= 0.08 histogram and >= 0.13 grey)."""

SEEK_MIN_DURATION = 30.0
"""Shorter files are decoded sequentially: it is cheap and always exact."""

SEEK_MAX_GOP = 0.5
"""Seek only when keyframes are at most this fraction of the seek step apart."""

SEEK_MAX_STEP = 5.0
"""Seek step: `every_s`, but at most this, so that cuts are still looked for when frames
are wanted rarely (examining more frames emits more only at cuts)."""

MAX_BAD_PACKETS = 100
"""Undecodable packets skipped before a damaged stream is given up."""

_INDEXED_FORMATS = ("mov", "mp4", "matroska", "webm", "avi")
_HIST_BINS = 4
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Display-matrix signs (a, b, c, d) -> the transpose that shows the frame upright
_MATRIX_TRANSPOSE: dict[tuple[int, int, int, int], Image.Transpose | None] = {
    (1, 0, 0, 1): None,
    (-1, 0, 0, 1): Image.Transpose.FLIP_LEFT_RIGHT,
    (1, 0, 0, -1): Image.Transpose.FLIP_TOP_BOTTOM,
    (-1, 0, 0, -1): Image.Transpose.ROTATE_180,
    (0, -1, 1, 0): Image.Transpose.ROTATE_90,  # shown turned 90 degrees counter-clockwise
    (0, 1, -1, 0): Image.Transpose.ROTATE_270,  # shown turned 90 degrees clockwise
    (0, 1, 1, 0): Image.Transpose.TRANSPOSE,
    (0, -1, -1, 0): Image.Transpose.TRANSVERSE,
}
# clockwise degrees (the "rotate" tag) -> transpose
_CLOCKWISE_TRANSPOSE: dict[int, Image.Transpose | None] = {
    0: None,
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}
_TRANSPOSE_CLOCKWISE = {
    None: 0,
    Image.Transpose.ROTATE_270: 90,
    Image.Transpose.ROTATE_180: 180,
    Image.Transpose.ROTATE_90: 270,
    Image.Transpose.FLIP_LEFT_RIGHT: 0,
    Image.Transpose.FLIP_TOP_BOTTOM: 180,
    Image.Transpose.TRANSPOSE: 270,
    Image.Transpose.TRANSVERSE: 90,
}
_SWAPS_AXES = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)


@dataclass(slots=True)
class VideoInfo:
    """What `probe` reads: `width`/`height` as displayed (rotation and pixel aspect applied),
    `rotation` in clockwise degrees (0, 90, 180, 270), `duration` None when unknown."""

    duration: float | None
    fps: float | None
    width: int
    height: int
    rotation: int
    codec: str
    has_audio: bool
    gps: dict[str, float] | None = None
    """Where it was filmed, from the container's ISO 6709 location tag (phones write one)."""

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "duration": self.duration,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "codec": self.codec,
            "has_audio": self.has_audio,
        }
        if self.gps:
            out["gps"] = self.gps
        return out


@dataclass(slots=True)
class Frame:
    """A sampled frame: upright RGB `image` (long side <= max_side) shown at `time` seconds.

    `shot_start` is where its shot begins (0.0 for the first shot). `shot_end` is set on the
    last frame sampled from a shot (the next shot's start, or the end of the video) and None
    while the shot goes on, so frames stream out without waiting for their shot to end.
    """

    time: float
    image: Image.Image
    shot_start: float
    shot_end: float | None


# --- public API ---------------------------------------------------------------------------


def probe(path: str) -> VideoInfo:
    """Read a video's metadata and decode its first frame; DecodeError if it has no video."""
    with _open(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "SLICE"  # frame threads would decode several frames before one
        frames = _decode_forward(container, stream)
        first = next(frames, None)
        frames.close()
        if first is None:
            raise DecodeError(f"no decodable video frame ({stream.codec_context.name})")
        transpose = _orientation(first, stream)
        width, height = _display_size(first.width, first.height, stream)
        if transpose in _SWAPS_AXES:
            width, height = height, width
        fps = _fps(stream)
        duration = _duration(container, stream)
        return VideoInfo(
            duration=round(duration, 3) if duration is not None else None,
            fps=round(fps, 3) if fps else None,
            width=width,
            height=height,
            rotation=_TRANSPOSE_CLOCKWISE.get(transpose, 0),
            codec=stream.codec_context.name,
            has_audio=_has_audio(container),
            gps=_location(container),
        )


def sample_frames(
    path: str,
    every_s: float,
    max_side: int = MAX_SIDE,
    *,
    mode: str = "auto",
    stats: dict[str, Any] | None = None,
) -> Iterator[Frame]:
    """Frames at every shot change and at most one every `every_s` s within a shot.

    Lazy and memory-bounded (one held frame). `mode` is "auto", "sequential" or "seek" (see
    the module notes); `stats`, when given, receives the mode used and frame counts. A file
    that cannot be opened raises DecodeError on the first `next()`; damage later on ends the
    iteration quietly.
    """
    if not every_s > 0:
        raise ValueError("every_s must be positive")
    stats = stats if stats is not None else {}
    with _open(path) as container:
        stream = _video_stream(container)
        _setup(stream)
        clock = _Clock(container, stream)
        convert = _Converter(stream, max_side)
        step = min(every_s, SEEK_MAX_STEP)
        chosen = _choose_mode(container, stream, step, clock) if mode == "auto" else mode
        stats.update(mode=chosen, decoded=0, examined=0)
        sampler = _Sampler(every_s, convert)
        if chosen == "seek":
            source = _seek_walk(container, stream, clock, convert, step, path, stats)
        else:
            source = _sequential_walk(container, stream, clock, convert, stats)
        pending: Frame | None = None
        for item in source:
            stats["examined"] += 1
            for out in sampler.feed(item):
                if pending is not None:
                    if out.shot_start > pending.shot_start:
                        pending.shot_end = out.shot_start
                    yield pending
                pending = out
        for out in sampler.finish():
            if pending is not None:
                if out.shot_start > pending.shot_start:
                    pending.shot_end = out.shot_start
                yield pending
            pending = out
        if pending is not None:
            pending.shot_end = max(
                clock.end if chosen != "seek" else clock.video_end(), pending.time
            )
            yield pending


def decode(path: str, config: Any) -> Decoded:
    """A video as lazily streamed `clip` frame segments, then `clap` sound windows.

    Frame segments tile the video: each covers [its time, the next frame's time), a shot's
    first frame starts at the shot's start, the last ends at the end of the video.
    """
    info = probe(path)
    every_s = float(getattr(config, "video_frame_every_s", 3.0) or 3.0)
    max_side = int(getattr(config, "max_image_side", None) or MAX_SIDE)
    window_s = float(getattr(config, "audio_window_s", 10.0))
    hop_s = float(getattr(config, "audio_hop_s", 5.0))

    def speech() -> Iterator[tuple[float, Any]]:
        """The sound track's 16 kHz PCM; a damaged track costs the speech, not the video's
        frames (as in `_segment_stream`): it ends the transcript early, quietly."""
        from searchengine.media import audio

        try:
            yield from audio.pcm_chunks(path, SPEECH_RATE, 30.0)
        except (DecodeError, av.error.FFmpegError) as exc:
            log.info("%s: no speech from the sound track: %s", path, exc)

    meta = info.meta()
    subs, sub_meta = _subtitles(path)
    meta.update(sub_meta)
    reader = _frame_reader(config, info, meta)
    if reader is None:
        meta["ocr"] = "off"
    return Decoded(
        file_type="video",
        segments=subs,
        meta=meta,
        stream=_segment_stream(path, every_s, max_side, info.has_audio, window_s, hop_s, reader),
        # subtitles, when there are, stand in for speech-to-text of the same lines
        speech_source=speech if info.has_audio and not subs else None,
    )


def frame_at(path: str, seconds: float) -> Image.Image:
    """The frame shown at `seconds`, upright, at full resolution (for thumbnails).

    Seeks to the keyframe before and decodes forward; when the seek fails or lands badly
    (no index, MPEG-PS), decodes from the start. DecodeError past the end of the video.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
    with _open(path) as container:
        stream = _video_stream(container)
        _setup(stream)
        clock = _Clock(container, stream)
        try:
            container.seek(clock.pts(seconds), stream=stream, backward=True, any_frame=False)
        except (av.error.FFmpegError, OverflowError, ValueError):
            pass  # not seekable: decode from the start below
        else:
            frame, previous = _covering(container, stream, clock, seconds)
            if frame is not None:
                return _full_image(frame, stream)
            if previous is not None:  # decoded from a keyframe before to the very end
                raise DecodeError(_past_end(seconds, clock))
    with _open(path) as container:
        stream = _video_stream(container)
        _setup(stream)
        clock = _Clock(container, stream)
        frame, previous = _covering(container, stream, clock, seconds, allow_first=True)
        if frame is not None:
            return _full_image(frame, stream)
        raise DecodeError(_past_end(seconds, clock))


# --- decode(): the segment stream ---------------------------------------------------------


def _segment_stream(
    path: str,
    every_s: float,
    max_side: int,
    has_audio: bool,
    window_s: float,
    hop_s: float,
    reader: FrameText | None = None,
) -> Iterator[list[Segment]]:
    batch: list[Segment] = []
    held: tuple[float, Image.Image] | None = None  # start and image of the previous frame
    last_shot = None
    last_end = 0.0
    for frame in sample_frames(path, every_s, max_side):
        new_shot = last_shot is None or frame.shot_start != last_shot
        start = frame.shot_start if new_shot else frame.time
        if held is None:
            start = 0.0
        else:
            batch.append(Segment("clip", "frame", held[0], start, payload=held[1]))
            if reader is not None:
                batch += reader.frame(held[0], start, held[1])
            if len(batch) >= BATCH:
                yield batch
                batch = []
        held = (start, frame.image)
        last_shot = frame.shot_start
        last_end = frame.shot_end if frame.shot_end is not None else frame.time
    if held is not None:
        end = max(last_end, held[0])
        batch.append(Segment("clip", "frame", held[0], end, payload=held[1]))
        if reader is not None:
            batch += reader.frame(held[0], end, held[1]) + reader.close()
    if batch:
        yield batch
    if not has_audio:
        return
    from searchengine.media import audio

    batch = []
    try:
        for start, end, pcm in audio.windows(path, CLAP_RATE, window_s, hop_s):
            batch.append(Segment("clap", "sound", float(start), float(end), payload=pcm))
            if len(batch) >= BATCH:
                yield batch
                batch = []
    except (DecodeError, av.error.FFmpegError) as exc:  # a damaged sound track ends early
        log.info("%s: sound track ends early: %s", path, exc)
    if batch:
        yield batch


# --- opening and stream facts --------------------------------------------------------------


def _open(path: str) -> Any:
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
        raise
    except av.error.FFmpegError as exc:
        raise DecodeError(f"not a readable video: {_reason(exc)}") from None
    except (UnicodeDecodeError, ValueError, EOFError) as exc:
        raise DecodeError(f"not a readable video: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    text = str(text).splitlines()[0].strip() if text else ""
    return text[:200] or type(exc).__name__


def _video_stream(container: Any) -> Any:
    """The first real video stream (cover art in audio files does not count)."""
    attached = av.stream.Disposition.attached_pic
    streams = [s for s in container.streams.video if not (s.disposition & attached)]
    if not streams:
        raise DecodeError("no video stream in this file")
    stream = streams[0]
    if stream.codec_context is None:
        raise DecodeError("unsupported video codec")
    return stream


def _setup(stream: Any) -> None:
    """Frame and slice threads; `SEARCHENGINE_THREADS` caps them like the encoders."""
    stream.thread_type = "AUTO"
    threads = int(os.environ.get("SEARCHENGINE_THREADS", "0") or 0)
    if threads > 0:
        stream.thread_count = threads


LOCATION_TAGS = ("com.apple.quicktime.location.ISO6709", "location", "location-eng")
_ISO6709 = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def _location(container: Any) -> dict[str, float] | None:
    """Signed degrees from an ISO 6709 tag ("+38.7223-009.1393+010.000/"): QuickTime's
    location key or MP4's ©xyz, as FFmpeg names them. Anything malformed is no position."""
    tags = container.metadata or {}
    for name in LOCATION_TAGS:
        m = _ISO6709.match(str(tags.get(name) or "").strip())
        if not m:
            continue
        lat, lon = float(m.group(1)), float(m.group(2))
        if abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0.0, 0.0):
            return {"lat": round(lat, 7), "lon": round(lon, 7)}
    return None


def _has_audio(container: Any) -> bool:
    return any(s.codec_context is not None for s in container.streams.audio)


def _fps(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) < 1000:
            return float(rate)
    return None


def _duration(container: Any, stream: Any) -> float | None:
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _display_size(width: int, height: int, stream: Any) -> tuple[int, int]:
    """Coded size with non-square pixels (DVD, HDV) stretched to their display width."""
    sar = stream.sample_aspect_ratio
    if sar and 0.1 < float(sar) < 10 and sar != 1:
        width = max(1, round(width * float(sar)))
    return width, height


def _orientation(frame: Any, stream: Any) -> Image.Transpose | None:
    """The transpose that shows `frame` upright: display matrix, else a "rotate" tag."""
    try:
        side = frame.side_data.get("DISPLAYMATRIX")
    except Exception:
        side = None
    if side is not None:
        raw = bytes(side)
        if len(raw) >= 36:
            m = struct.unpack("=9i", raw[:36])
            a, b, c, d = m[0], m[1], m[3], m[4]
            scale = max(abs(a), abs(b), abs(c), abs(d))
            if scale:
                key = tuple(round(v / scale) for v in (a, b, c, d))
                if key in _MATRIX_TRANSPOSE:
                    return _MATRIX_TRANSPOSE[key]
            ccw = round(getattr(frame, "rotation", 0) / 90) * 90
            return _CLOCKWISE_TRANSPOSE.get(-ccw % 360)
    tag = stream.metadata.get("rotate") if stream.metadata else None
    try:
        clockwise = round(float(tag) / 90) * 90 % 360 if tag else 0
    except ValueError:
        clockwise = 0
    return _CLOCKWISE_TRANSPOSE.get(clockwise)


class _Clock:
    """Frame times in seconds from the container's start; tracks where decoding got to."""

    def __init__(self, container: Any, stream: Any) -> None:
        self.stream = stream
        self.time_base = stream.time_base
        if container.start_time is not None:
            self.origin = container.start_time / av.time_base
        elif stream.start_time is not None and stream.time_base:
            self.origin = float(stream.start_time * stream.time_base)
        else:
            self.origin = 0.0
        fps = _fps(stream)
        self.frame_s = 1.0 / fps if fps else 1 / 25
        self.duration = _duration(container, stream)
        self.last = -math.inf
        self.end = 0.0

    def time(self, frame: Any) -> float:
        pts = frame.pts  # in the stream's time base (frames drained at the end lack theirs)
        if pts is None or not self.time_base:  # no timestamp: the frame after the previous one
            t_rel = (self.last + self.frame_s) if self.last > -math.inf else 0.0
        else:
            t_rel = max(0.0, float(pts * self.time_base) - self.origin)
        self.last = t_rel
        dur = self.frame_s
        if frame.duration and self.time_base:
            dur = float(frame.duration * self.time_base) or dur
        self.end = max(self.end, t_rel + dur)
        return t_rel

    def pts(self, seconds: float) -> int:
        if not self.time_base:
            return int((seconds + self.origin) * av.time_base)
        return int((seconds + self.origin) / self.time_base)

    def video_end(self) -> float:
        """End of the video stream when not decoded to the end: header, else what was seen."""
        stream = self.stream
        if stream.duration and stream.time_base:
            start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            return max(self.end, start - self.origin + float(stream.duration * stream.time_base))
        if self.duration is not None:
            return max(self.end, self.duration)
        return self.end


# --- frames -> pixels ------------------------------------------------------------------------


class _Converter:
    """Thumbnails for judging frames and upright RGB images for emitting them."""

    def __init__(self, stream: Any, max_side: int) -> None:
        self.stream = stream
        self.max_side = max(16, int(max_side))
        self._thumbs = VideoReformatter()  # one per target size: each caches its scaler
        self._images = VideoReformatter()
        self.transpose: Image.Transpose | None = None
        self._oriented = False

    def thumb(self, frame: Any) -> _Thumb:
        rgb = self._thumbs.reformat(
            frame, width=32, height=32, format="rgb24", interpolation="AREA"
        ).to_ndarray()
        return _Thumb(_histogram(rgb), _grey(rgb))

    def image(self, frame: Any) -> Image.Image:
        if not self._oriented:
            self.transpose = _orientation(frame, self.stream)
            self._oriented = True
        width, height = _display_size(frame.width, frame.height, self.stream)
        scale = min(1.0, self.max_side / max(width, height))
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        image = self._images.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="AREA"
        ).to_image()
        if self.transpose is not None:
            image = image.transpose(self.transpose)
        return image


def _full_image(frame: Any, stream: Any) -> Image.Image:
    width, height = _display_size(frame.width, frame.height, stream)
    if (width, height) != (frame.width, frame.height):
        image = frame.to_image(width=width, height=height, interpolation="BICUBIC")
    else:
        image = frame.to_image()
    transpose = _orientation(frame, stream)
    return image.transpose(transpose) if transpose is not None else image


@dataclass(slots=True)
class _Thumb:
    hist: np.ndarray  # (64,) sums to 1
    grey: np.ndarray  # (16, 16) float32, 0..255


def _histogram(rgb: np.ndarray) -> np.ndarray:
    """Joint RGB histogram, 4 bins a channel, each pixel shared between its two nearest bins
    per channel (so coding noise around a bin edge cannot move a flat area across bins)."""
    n = _HIST_BINS
    x = rgb.reshape(-1, 3).astype(np.float32) * (n / 256.0) - 0.5
    lo = np.floor(x)
    frac = x - lo
    lo_i = np.clip(lo, 0, n - 1).astype(np.intp)
    hi_i = np.clip(lo + 1, 0, n - 1).astype(np.intp)
    bins = np.arange(n)
    weights = []
    for ch in range(3):
        w = (1 - frac[:, ch, None]) * (lo_i[:, ch, None] == bins)
        w += frac[:, ch, None] * (hi_i[:, ch, None] == bins)
        weights.append(w)
    hist = np.einsum("pi,pj,pk->ijk", *weights).ravel()
    return hist / max(float(hist.sum()), 1e-9)


def _grey(rgb: np.ndarray) -> np.ndarray:
    grey = rgb.astype(np.float32) @ _GREY
    return grey.reshape(16, 2, 16, 2).mean(axis=(1, 3))


def _hist_distance(a: _Thumb, b: _Thumb) -> float:
    return 0.5 * float(np.abs(a.hist - b.hist).sum())


def _grey_distance(a: _Thumb, b: _Thumb) -> float:
    return float(np.abs(a.grey - b.grey).mean()) / 255.0


def change_score(a: _Thumb, b: _Thumb) -> float:
    """Histogram distance + grey difference, 0 (same) .. 2."""
    return _hist_distance(a, b) + _grey_distance(a, b)


def near_duplicate(a: _Thumb, b: _Thumb) -> bool:
    return _hist_distance(a, b) < DUP_HIST and _grey_distance(a, b) < DUP_PIX


# --- walking the file -------------------------------------------------------------------------


@dataclass(slots=True)
class _Examined:
    time: float
    frame: Any  # av.VideoFrame
    thumb: _Thumb
    contiguous: bool  # examined PROBE_S after the previous one (no skipped stretch between)


def _decode_forward(
    container: Any, stream: Any, stats: dict[str, Any] | None = None
) -> Iterator[Any]:
    """Decoded frames from the current position to the end. Undecodable packets are skipped
    (up to MAX_BAD_PACKETS); unreadable data ends the walk after flushing the decoder."""
    bad = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
            log.info("video ends early (unreadable data): %s", _reason(exc))
            break
        try:
            frames = stream.decode(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            bad += 1
            if bad > MAX_BAD_PACKETS:
                log.info("video ends early (too many bad packets): %s", _reason(exc))
                break
            continue
        if stats is not None:
            stats["decoded"] = stats.get("decoded", 0) + len(frames)
        yield from frames
    try:
        frames = stream.decode(None)
    except (av.error.FFmpegError, ValueError):
        frames = []
    yield from frames


def _sequential_walk(
    container: Any,
    stream: Any,
    clock: _Clock,
    convert: _Converter,
    stats: dict[str, Any],
    after: float = -math.inf,
) -> Iterator[_Examined]:
    """Examine one frame every PROBE_S, decoding everything (from `after` on, if given)."""
    slack = min(PROBE_S, clock.frame_s) / 4
    next_t = after + PROBE_S - slack if after > -math.inf else -math.inf
    first = True
    for frame in _decode_forward(container, stream, stats):
        t = clock.time(frame)
        if t < next_t:
            continue
        next_t = t + PROBE_S - slack
        yield _Examined(t, frame, convert.thumb(frame), contiguous=not first)
        first = False


class _SeekUnusable(Exception):
    """Seeking does not work on this file (fails, or lands far from the target)."""


def _choose_mode(container: Any, stream: Any, step: float, clock: _Clock) -> str:
    duration = clock.duration
    if duration is None or duration < SEEK_MIN_DURATION or not container.format:
        return "sequential"
    names = container.format.name.split(",")
    if not any(name in _INDEXED_FORMATS for name in names):
        return "sequential"
    try:
        if len(stream.index_entries) < 2:  # Matroska reads its cues on the first seek
            container.seek(clock.pts(0.0), stream=stream, backward=True)
        entries = stream.index_entries
        count = len(entries)
        if count < 2:
            return "sequential"
        part = entries[: min(count, 20000)]
        keyframes = sum(1 for e in part if e.is_keyframe)
        span = (part[-1].timestamp - part[0].timestamp) * stream.time_base
        span = float(span) if count > len(part) else max(float(span), duration)
    except (av.error.FFmpegError, OverflowError, ValueError, TypeError):
        return "sequential"
    if keyframes < 2:
        return "sequential"
    gop = span / keyframes
    return "seek" if gop <= SEEK_MAX_GOP * step else "sequential"


def _seek_walk(
    container: Any,
    stream: Any,
    clock: _Clock,
    convert: _Converter,
    step: float,
    path: str,
    stats: dict[str, Any],
) -> Iterator[_Examined]:
    """Seek to the keyframe before each multiple of `step` and examine the frames decoded
    from there up to it. When the frames either side of a skipped stretch differ by a cut's
    score, the index's keyframes inside the stretch are bisected (one intra frame decoded
    each) to place the cut at the first keyframe after it. Falls back to sequential decoding
    when seeking does not work on this file."""
    last: _Examined | None = None
    slack = min(PROBE_S, clock.frame_s) / 4
    end = clock.video_end()
    k = 0
    bisected = False  # the stretch before this target was bisected already
    try:
        while k * step < end:
            target = k * step
            _seek(container, stream, clock, target)
            landed = reached = restart = False
            frames = _decode_forward(container, stream, stats)
            try:
                for frame in frames:
                    t = clock.time(frame)
                    last_t = last.time if last is not None else -math.inf
                    if not landed:
                        landed = True
                        if t > target + max(2.0, step) or t < last_t - 4 * step - 10:
                            raise _SeekUnusable(f"seek to {target:.1f} s landed at {t:.1f} s")
                    if t < last_t + PROBE_S - slack:  # examined already
                        continue
                    item = _Examined(t, frame, convert.thumb(frame), contiguous=True)
                    if last is not None and t - last_t > 1.5 * PROBE_S + clock.frame_s:
                        item.contiguous = False
                        if not bisected and change_score(last.thumb, item.thumb) >= CUT:
                            bisected = restart = True
                            break
                    yield item
                    last = item
                    if t >= target - slack:
                        reached = True
                        break
            finally:
                frames.close()
            if restart and last is not None:
                found = _bisect(container, stream, clock, convert, last, item, stats)
                if found is not None:
                    yield found
                    last = found
                continue  # the same target again, from its keyframe
            bisected = False
            if not landed and target < end - max(2.0, step):
                raise _SeekUnusable(f"nothing decodes after a seek to {target:.1f} s")
            if not reached or last is None:
                break  # the end of the stream
            k = max(k + 1, math.floor(last.time / step) + 1)
    except _SeekUnusable as exc:
        log.info("%s: seeking unusable (%s); decoding sequentially", path, exc)
        stats["mode"] = "sequential (seek fell back)"
        after = last.time if last is not None else -math.inf
        with _open(path) as again:
            vstream = _video_stream(again)
            _setup(vstream)
            again_clock = _Clock(again, vstream)
            for item in _sequential_walk(again, vstream, again_clock, convert, stats, after):
                clock.end = max(clock.end, again_clock.end)
                yield item


def _seek(container: Any, stream: Any, clock: _Clock, seconds: float) -> None:
    try:
        container.seek(clock.pts(seconds), stream=stream, backward=True, any_frame=False)
    except (av.error.FFmpegError, OverflowError, ValueError) as exc:
        raise _SeekUnusable(_reason(exc)) from None


def _bisect(
    container: Any,
    stream: Any,
    clock: _Clock,
    convert: _Converter,
    before: _Examined,
    after: _Examined,
    stats: dict[str, Any],
) -> _Examined | None:
    """The first indexed keyframe between `before` and `after` that looks like `after`
    (assuming one change in between); None when there is none, or it is `after` itself."""
    keys = _keyframes_between(stream, clock, before.time + PROBE_S, after.time - PROBE_S)
    lo, hi = 0, len(keys)
    found = None
    while lo < hi:
        mid = (lo + hi) // 2
        item = _keyframe(container, stream, clock, convert, keys[mid], stats)
        if item is None or not before.time < item.time < after.time:
            return found  # the index does not match the frames: keep what we know
        item.contiguous = False
        if change_score(item.thumb, after.thumb) < change_score(item.thumb, before.thumb):
            hi, found = mid, item
        else:
            lo = mid + 1
    return found


def _keyframes_between(stream: Any, clock: _Clock, t0: float, t1: float) -> list[float]:
    """Times of the index's keyframes in [t0, t1] (at most 64)."""
    if t1 < t0 or not stream.time_base:
        return []
    entries = stream.index_entries
    try:
        i = entries.search_timestamp(clock.pts(t0), backward=False, any_frame=False)
        stop = clock.pts(t1)
        out: list[float] = []
        while 0 <= i < len(entries) and len(out) < 64:
            entry = entries[i]
            if entry.timestamp > stop:
                break
            if entry.is_keyframe:
                out.append(float(entry.timestamp * stream.time_base) - clock.origin)
            i += 1
    except (av.error.FFmpegError, IndexError, OverflowError, ValueError, TypeError):
        return []
    return out


def _keyframe(
    container: Any,
    stream: Any,
    clock: _Clock,
    convert: _Converter,
    seconds: float,
    stats: dict[str, Any],
) -> _Examined | None:
    """Decode only the keyframe at `seconds`: its packet, then drain the decoder (frame
    threads would otherwise wait for more packets); the next seek resets the decoder."""
    _seek(container, stream, clock, seconds)
    packets = container.demux(stream)
    try:
        for packet in packets:
            if packet.size == 0:
                return None
            try:
                frames = list(stream.decode(packet)) + list(stream.decode(None))
            except (av.error.FFmpegError, ValueError):
                return None
            stats["decoded"] = stats.get("decoded", 0) + len(frames)
            if not frames:
                return None
            frame = frames[0]
            return _Examined(clock.time(frame), frame, convert.thumb(frame), contiguous=False)
    except (av.error.FFmpegError, OSError, ValueError, EOFError):
        return None
    finally:
        packets.close()
    return None


# --- shots and sampling -------------------------------------------------------------------------


class _Sampler:
    """Turns examined frames (in time order) into emitted frames: one at each confirmed cut,
    and within a shot the first non-duplicate at least `every_s` after the last emitted.

    A cut is decided one examined frame late, once the score after it is known. Across a
    skipped stretch (seek mode) the score still counts for a cut, placed at the first frame
    after the stretch (a keyframe); as a neighbour's score it counts as 0, being the change
    over seconds rather than over `PROBE_S`.
    """

    def __init__(self, every_s: float, convert: _Converter) -> None:
        self.every_s = every_s
        self.convert = convert
        self.prev: _Examined | None = None
        self.prev_score = 0.0  # score(prev's predecessor, prev), 0 across a skipped stretch
        self.candidate: tuple[_Examined, float, float] | None = None  # (frame, score, before)
        self.emitted: _Thumb | None = None
        self.next_due = 0.0
        self.shot_start = 0.0

    def feed(self, item: _Examined) -> list[Frame]:
        out: list[Frame] = []
        if self.prev is None:
            out.append(self._emit(item, new_shot=True, shot_start=0.0))
            self.prev, self.prev_score = item, 0.0
            return out
        score = change_score(self.prev.thumb, item.thumb)
        neighbour = score if item.contiguous else 0.0
        if self.candidate is not None:
            out.extend(self._settle(after=neighbour))
        if score >= CUT:
            self.candidate = (item, score, self.prev_score)  # decided at the next frame
        else:
            out.extend(self._interval(item))
        self.prev, self.prev_score = item, neighbour
        return out

    def finish(self) -> list[Frame]:
        return self._settle(after=0.0) if self.candidate is not None else []

    def _settle(self, after: float) -> list[Frame]:
        item, score, before = self.candidate  # type: ignore[misc]
        self.candidate = None
        if score >= CUT_RATIO * (before + after) / 2:
            return [self._emit(item, new_shot=True, shot_start=item.time)]
        return self._interval(item)  # motion or a flash: an ordinary frame

    def _interval(self, item: _Examined) -> list[Frame]:
        if item.time < self.next_due - 1e-6:
            return []
        if self.emitted is not None and near_duplicate(item.thumb, self.emitted):
            return []
        return [self._emit(item, new_shot=False, shot_start=self.shot_start)]

    def _emit(self, item: _Examined, new_shot: bool, shot_start: float) -> Frame:
        if new_shot:
            self.shot_start = shot_start
        self.emitted = item.thumb
        self.next_due = item.time + self.every_s
        return Frame(item.time, self.convert.image(item.frame), self.shot_start, None)


# --- frame_at --------------------------------------------------------------------------------


def _covering(
    container: Any, stream: Any, clock: _Clock, seconds: float, allow_first: bool = False
) -> tuple[Any | None, Any | None]:
    """(the frame shown at `seconds`, None) decoding from the current position on; else
    (None, the last frame) when the stream ends before `seconds`, or (None, None) when no
    frame decodes or the first one is already later (unless `allow_first`: then that one)."""
    previous = None
    frames = _decode_forward(container, stream)
    try:
        for frame in frames:
            t = clock.time(frame)
            if t <= seconds + 1e-6:
                previous = frame
                continue
            if previous is not None:
                return previous, None
            return (frame, None) if allow_first else (None, None)
    finally:
        frames.close()
    if previous is not None and seconds <= clock.end + 1e-3:
        return previous, None
    return None, previous


def _past_end(seconds: float, clock: _Clock) -> str:
    end = clock.end if clock.end > 0 else (clock.duration or 0.0)
    return f"{seconds:.3f} s is past the end of the video ({end:.3f} s)"


class FrameText:
    """Text read in the sampled frames (slides, burned-in captions), a line shown across
    several frames stored once with the time range it was on screen."""

    def __init__(self, width: int, height: int, meta: dict[str, Any], engine: str) -> None:
        self.size = (width, height)
        self.engine = engine  # the index's OCR engine (media/ocr.py)
        self.meta = meta  # the file's record: notes that text was read
        self.open: dict[str, list[Any]] = {}  # folded text -> [start, end, text, box]

    def frame(self, start: float, end: float, image: Image.Image) -> list[Segment]:
        from searchengine.media import ocr

        back = self.size[0] / image.width if self.size[0] else 1.0
        seen: dict[str, list[Any]] = {}
        for text, box in ocr.blocks(ocr.read_lines(image, engine=self.engine)):
            self.meta["ocr"] = self.engine
            key = " ".join(text.lower().split())
            if key in self.open:
                self.open[key][1] = end
                seen[key] = self.open.pop(key)
            else:
                seen[key] = [start, end, text, [round(v * back) for v in box]]
        done = self.close()
        self.open = seen
        return done

    def close(self) -> list[Segment]:
        out = [
            Segment("text", "ocr", s, e, text=t, payload=t, loc={"box": b})
            for s, e, t, b in self.open.values()
        ]
        self.open = {}
        return out


def _frame_reader(config: Any, info: VideoInfo, meta: dict[str, Any]) -> FrameText | None:
    from searchengine.media.image import ocr_setting

    engine = ocr_setting(config)
    if engine == "off":
        return None
    return FrameText(info.width, info.height, meta, engine)


def _subtitles(path: str) -> tuple[list[Segment], dict[str, Any]]:
    """Subtitle lines (sidecar file or text stream) as transcript segments, and notes."""
    from searchengine.media.subtitles import subtitle_segments

    try:
        with _open(path) as container:
            if not container.streams.subtitles:
                return subtitle_segments(path, None)
            return subtitle_segments(path, container)
    except (DecodeError, av.error.FFmpegError, OSError) as exc:
        return [], {"subtitle_errors": [str(exc)]}
