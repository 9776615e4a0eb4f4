"""Known-answer videos written with PyAV: slideshows of still images, optionally with sound.

`make_slideshow` shows each image for `seconds_each` seconds, so the shot changes are known
exactly (at k * seconds_each). The container follows the file extension (.mp4, .mkv, .webm,
.mov, .avi, .mpg, .ogv), and the codecs default to ones that container takes and this PyAV
build can encode.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
COCKATOO = SAMPLES / "video" / "cockatoo.mp4"

# extension -> (muxer, video codecs to try, audio codecs to try)
_CONTAINERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    ".mp4": ("mp4", ("libx264", "mpeg4"), ("aac",)),
    ".m4v": ("mp4", ("libx264", "mpeg4"), ("aac",)),
    ".mov": ("mov", ("libx264", "mpeg4"), ("aac",)),
    ".mkv": ("matroska", ("libx264", "mpeg4"), ("aac", "libopus", "flac")),
    ".webm": ("webm", ("libvpx-vp9", "libvpx"), ("libopus", "opus", "vorbis")),
    ".avi": ("avi", ("mpeg4", "mjpeg"), ("mp3", "libmp3lame", "pcm_s16le")),
    ".mpg": ("mpeg", ("mpeg2video", "mpeg1video"), ("mp2",)),
    ".mpeg": ("mpeg", ("mpeg2video", "mpeg1video"), ("mp2",)),
    ".ogv": ("ogg", ("libtheora", "libvpx"), ("libopus", "opus", "vorbis", "flac")),
}


def encoder_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def first_available(names: Sequence[str]) -> str | None:
    return next((name for name in names if encoder_available(name)), None)


def make_slideshow(
    path: str | Path,
    images: Sequence[Image.Image],
    seconds_each: float,
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    codec: str | None = None,
    audio: np.ndarray | None = None,
    *,
    sample_rate: int = 48000,
    audio_codec: str | None = None,
    rotation: int = 0,
    gop: int | None = None,
    faststart: bool = False,
) -> Path:
    """Write `images` as a video, each shown `seconds_each` s; return the path.

    `audio` is mono float32 PCM at `sample_rate`. `rotation` (clockwise degrees, like a
    phone's "rotate" tag) is stored as the stream's display matrix: the pixels stay as
    given and a player turns them. `gop` is the keyframe interval in frames (encoder
    default when None). `faststart` moves an MP4/MOV index to the front of the file.
    """
    path = Path(path)
    ext = path.suffix.lower()
    muxer, video_codecs, audio_codecs = _CONTAINERS.get(ext, _CONTAINERS[".mkv"])
    codec = codec or first_available(video_codecs)
    if codec is None:
        raise RuntimeError(f"no video encoder for {ext} in this PyAV build")
    frames_each = max(1, round(seconds_each * fps))
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=muxer, options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        opts: dict[str, str] = {}
        if codec == "libx264":
            opts["preset"] = "ultrafast"
        if codec.startswith("libvpx"):
            opts.update({"deadline": "realtime", "cpu-used": "8", "b": "1M"})
        if gop is not None:
            stream.gop_size = gop
            if codec == "libx264":
                opts["keyint_min"] = str(gop)
        else:  # a keyframe every 2 s by default: seekable, like most real files
            stream.gop_size = max(1, 2 * fps)
        stream.options = opts
        if codec in ("mpeg4", "mpeg2video", "mpeg1video", "mjpeg"):
            stream.bit_rate = 2_000_000
        if rotation % 360:
            stream.set_display_rotation(-float(rotation))  # PyAV takes counter-clockwise
        astream = None
        if audio is not None:
            name = audio_codec or first_available(audio_codecs)
            if name is None:
                raise RuntimeError(f"no audio encoder for {ext} in this PyAV build")
            astream = container.add_stream(name, rate=sample_rate)
            astream.layout = "mono"
        index = 0
        for image in images:
            fitted = ImageOps.fit(image.convert("RGB"), size, Image.Resampling.BICUBIC)
            frame_image = av.VideoFrame.from_image(fitted)
            for _ in range(frames_each):
                frame = frame_image.reformat(format=stream.pix_fmt)
                frame.pts = index
                frame.time_base = Fraction(1, fps)
                index += 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if astream is not None and audio is not None:
            pcm = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).reshape(1, -1))
            step = 4800
            for start in range(0, pcm.shape[1], step):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(pcm[:, start : start + step]),
                    format="fltp",
                    layout="mono",
                )
                chunk.sample_rate = sample_rate
                chunk.pts = start
                chunk.time_base = Fraction(1, sample_rate)
                container.mux(astream.encode(chunk))
            container.mux(astream.encode(None))
    return path


def solid(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> Image.Image:
    return Image.new("RGB", size, color)


def tone(seconds: float, freq: float = 440.0, sample_rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate), dtype=np.float32) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def ensure_samples(name: str, probe: Path) -> Path:
    """Fetch a sample set with scripts/fetch_samples.py when `probe` is missing; skip if offline."""
    if not probe.exists():
        if shutil.which("apt-get") is None:
            pytest.skip(f"{probe} missing and apt-get unavailable to fetch it")
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "fetch_samples.py"), name],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
        )
        if not probe.exists():
            pytest.skip(f"could not fetch sample set {name!r}: {result.stderr[-300:]}")
    return probe
