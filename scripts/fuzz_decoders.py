#!/usr/bin/env python3
"""Fuzz the media decoders with mutated real files: no crash, no hang, every case recorded.

Seeds are real files of each format: the fetched sample sets (``scripts/fetch_samples.py``)
where they hold one, plus small files written here from real decoded content (a photo's
pixels, a recording's samples, a video's frames), so every format has seeds offline too.
Each case is one seed mutated from a fixed seed (truncated, bits flipped, bytes overwritten,
edge values written over sizes, digits changed, chunks duplicated or removed, emptied, header
kept over a garbage body, a wrong extension; PNG chunk and Ogg page CRCs mostly made right
again so that the damage reaches the decoders), plus a few crafted hostile files
(decompression bombs, absurd headers, cyclic or deep PDFs), then decoded the way the indexer
does it: ``decode_file(path, IndexConfig())``, the lazy ``stream`` consumed to the end and
``speech_source()`` read through.

Decoding runs in worker processes (one case at a time each, address space capped), so a
native crash or a hang is pinned on its case and the campaign goes on with a fresh worker.
Outcomes: ``indexed`` (segments produced), ``failed``/``skipped`` (DecodeError/Skip, with
the reason), ``unexpected`` (any other exception, or a malformed segment), ``crash`` (the
worker died), ``hang`` (over the time limit).

Usage::

    python scripts/fuzz_decoders.py --cases 300 --seed 1 --out fuzz-report.json
    python scripts/fuzz_decoders.py --cases 20 --formats png,mp4 --no-samples
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("jpeg", "png", "gif", "webp", "mp3", "ogg", "wav", "mp4", "mkv", "pdf")
EXTENSIONS = {
    "jpeg": ".jpg",
    "png": ".png",
    "gif": ".gif",
    "webp": ".webp",
    "mp3": ".mp3",
    "ogg": ".ogg",
    "wav": ".wav",
    "mp4": ".mp4",
    "mkv": ".mkv",
    "pdf": ".pdf",
}
# extensions a "wrong extension" case may get: every format's, and a few other kinds
OTHER_EXTENSIONS = (*EXTENSIONS.values(), ".txt", ".flac", ".webm", ".avi", ".tiff", "")
SOUND_RATE = 22050
"""Rate of the seed sound's PCM (encoders get it resampled to what they take)."""
OUTCOMES = ("indexed", "failed", "skipped", "unexpected", "crash", "hang")
DECODER = "searchengine.media:decode_file"

# mutation -> weight; each case draws one
MUTATIONS = {
    "truncate": 0.16,
    "flip_bits": 0.16,
    "overwrite_run": 0.10,
    "special_ints": 0.11,
    "tweak_digits": 0.05,
    "duplicate_chunk": 0.07,
    "remove_chunk": 0.07,
    "zero_length": 0.02,
    "header_garbage": 0.07,
    "wrong_extension": 0.09,
    "stacked": 0.10,
}
REPAIR_CHECKSUMS = 0.7
"""Share of damaged PNG and Ogg cases whose chunk/page CRCs are recomputed afterwards, so the
damage reaches the image and audio decoders instead of stopping at a checksum test."""
_SPECIAL = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
_EDGE = 4096  # bytes at each end where headers, indexes and trailers live


# --- seeds ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """A real file of one format, and where it came from (for the report)."""

    format: str
    path: Path
    origin: str


def sample_seeds(samples: Path, work: Path, per_format: int = 3) -> list[Seed]:
    """Seeds from the fetched sample sets: a few small files per format found there.

    Long files are cut to a few seconds (video remuxed, packets copied: the real encoder's
    bitstream) or pages (PDF, real fonts and content streams), so that one case decodes in
    well under a second and a campaign can run thousands.
    """
    seeds: list[Seed] = []
    picks = {
        "jpeg": (samples / "images", ("*.jpg", "*.jpeg"), 5_000, 150_000),
        "png": (samples / "images", ("*.png",), 5_000, 150_000),
        "mp3": (samples / "sounds", ("*.mp3",), 5_000, 250_000),
        "wav": (samples / "sounds", ("*.wav",), 5_000, 250_000),
        "ogg": (samples / "sounds", ("*.ogg", "*.oga"), 5_000, 250_000),
    }
    for fmt, (root, globs, lo, hi) in picks.items():
        found = sorted(
            p for g in globs for p in root.rglob(g) if p.is_file() and lo <= p.stat().st_size <= hi
        )
        for path in _spread(found, per_format):
            seeds.append(Seed(fmt, path, f"samples/{path.relative_to(samples)}"))
    cockatoo = samples / "video" / "cockatoo.mp4"
    if cockatoo.is_file():
        for fmt in ("mp4", "mkv"):
            out = work / f"cockatoo-3s{EXTENSIONS[fmt]}"
            if _remux_head(cockatoo, out, seconds=3.0):
                seeds.append(Seed(fmt, out, "samples/video/cockatoo.mp4, first 3 s remuxed"))
    for i, pdf in enumerate(sorted((samples / "docs").rglob("*.pdf"))[:per_format]):
        origin = f"samples/{pdf.relative_to(samples)}, pages 1-3"
        out = work / f"{pdf.stem}-p1-3.pdf"
        if _pdf_head(pdf, out, pages=3):
            seeds.append(Seed("pdf", out, origin))
        out = work / f"{pdf.stem}-p1-3-plain.pdf"
        if i == 0 and _pdf_head(pdf, out, pages=3, plain=True):
            seeds.append(Seed("pdf", out, f"{origin}, content streams uncompressed"))
    return seeds


def _spread(items: Sequence[Path], n: int) -> list[Path]:
    """n items evenly spread over a sorted list (deterministic, varied sources)."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / max(1, n - 1))] for i in range(n)]


def _remux_head(src: Path, dst: Path, seconds: float) -> bool:
    """Copy the first `seconds` of every audio/video stream's packets into a new container."""
    import av

    try:
        with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
            streams = [s for s in inp.streams if s.type in ("video", "audio")]
            mapping = {s.index: out.add_stream_from_template(s) for s in streams}
            for packet in inp.demux(streams):
                if packet.dts is None:
                    continue
                if packet.pts is not None and packet.pts * packet.time_base > seconds:
                    continue
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
    except Exception as exc:  # a sample that does not remux is no seed; say so
        print(f"  no seed from {src.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    return dst.stat().st_size > 0


def _pdf_head(src: Path, dst: Path, pages: int, plain: bool = False) -> bool:
    """The first `pages` of a PDF; `plain` stores the page content streams uncompressed, so
    that mutations hit the content parser and text extraction, not only zlib."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import DecodedStreamObject

    try:
        reader = PdfReader(str(src))
        writer = PdfWriter()
        for page in reader.pages[:pages]:
            added = writer.add_page(page)
            if plain and added.get_contents() is not None:
                content = DecodedStreamObject()
                content.set_data(added.get_contents().get_data())
                added.replace_contents(content)
        if reader.metadata and reader.metadata.title:
            writer.add_metadata({"/Title": str(reader.metadata.title)})
        with open(dst, "wb") as fh:
            writer.write(fh)
    except Exception as exc:
        print(f"  no seed from {src.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    return True


def find_photo(samples: Path | None) -> tuple[Any, str]:
    """A real photograph as an RGB Pillow image, and where it came from.

    The sample images first; else the photos scikit-learn ships (installed here as a
    dependency of sentence-transformers); else a drawn picture, so seeds exist anywhere.
    """
    from PIL import Image

    candidates: list[tuple[Path, str]] = []
    if samples is not None:
        for name in (
            "scikit-image/chelsea.png",
            "scikit-image/coffee.png",
            "scikit-learn/china.jpg",
        ):
            candidates.append((samples / "images" / name, f"samples/images/{name}"))
    try:
        import importlib.util

        spec = importlib.util.find_spec("sklearn")
        if spec is not None and spec.origin:
            root = Path(spec.origin).parent / "datasets" / "images"
            candidates += [(root / "china.jpg", "scikit-learn's china.jpg")]
    except (ImportError, ValueError):
        pass
    for path, origin in candidates:
        if path.is_file():
            with Image.open(path) as im:
                return im.convert("RGB"), origin
    return _drawn_picture(), "a drawn picture (no photo found)"


def _drawn_picture(size: tuple[int, int] = (320, 240)) -> Any:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(7)
    h, w = size[1], size[0]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=-1)
    rgb += rng.normal(0, 12, rgb.shape)
    im = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for i in range(6):
        box = [int(v) for v in (rng.integers(0, w - 40), rng.integers(0, h - 40))]
        draw.ellipse(
            [box[0], box[1], box[0] + 40 + 8 * i, box[1] + 30 + 5 * i], fill=(40 * i, 90, 200)
        )
    draw.text((10, 10), "fuzz seed", fill=(255, 255, 255))
    return im


def find_sound(samples: Path | None, rate: int = SOUND_RATE) -> tuple[np.ndarray, str]:
    """A few seconds of real recorded sound as mono float32 PCM at `rate`, and its origin;
    a synthetic chirp with noise bursts when no sample set is there."""
    if samples is not None:
        for pattern in ("scratch/**/*.wav", "qabcs-data/*.ogg", "**/*.oga"):
            for path in sorted((samples / "sounds").glob(pattern)):
                pcm = _read_pcm(path, rate, max_seconds=4.0)
                if pcm is not None and len(pcm) >= rate:
                    return pcm, f"samples/{path.relative_to(samples)}"
    t = np.arange(int(3.0 * rate), dtype=np.float32) / rate
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)
    bursts = (np.sin(2 * np.pi * 2 * t) > 0.6) * np.random.default_rng(3).normal(0, 0.1, t.size)
    return (chirp + bursts).astype(np.float32), "a synthetic chirp (no sample sound found)"


def _read_pcm(path: Path, rate: int, max_seconds: float) -> np.ndarray | None:
    import av

    pieces: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
                if sum(len(p) for p in pieces) >= max_seconds * rate:
                    break
    except Exception:
        return None
    return np.concatenate(pieces)[: int(max_seconds * rate)] if pieces else None


def generated_seeds(work: Path, samples: Path | None = None) -> list[Seed]:
    """Small seeds of every format written with Pillow, PyAV and pypdf from real content."""
    photo, photo_origin = find_photo(samples)
    pcm, sound_origin = find_sound(samples)
    seeds: list[Seed] = []

    def add(fmt: str, name: str, origin: str, write: Callable[[Path], Any]) -> None:
        path = work / name
        try:
            write(path)
        except Exception as exc:  # an encoder this build lacks: fewer seeds, said aloud
            print(f"  no {fmt} seed {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        seeds.append(Seed(fmt, path, origin))

    small = photo.copy()
    small.thumbnail((192, 192))
    of_photo = f"written by Pillow from {photo_origin}"
    add("jpeg", "photo-exif.jpg", of_photo, lambda p: _save_jpeg(small, p, progressive=False))
    add("jpeg", "photo-progressive.jpg", of_photo, lambda p: _save_jpeg(small, p, progressive=True))
    add("png", "photo-rgba.png", of_photo, lambda p: _with_alpha(small).save(p))
    add("png", "photo-palette.png", of_photo, lambda p: small.quantize(64).save(p))
    add("png", "photo-16bit.png", of_photo, lambda p: _grey16(small).save(p))
    add("gif", "photo-anim.gif", of_photo, lambda p: _save_gif(small, p))
    add("gif", "photo-still.gif", of_photo, lambda p: small.convert("P").save(p))
    add("webp", "photo-lossy.webp", of_photo, lambda p: small.save(p, quality=70))
    add("webp", "photo-alpha.webp", of_photo, lambda p: _with_alpha(small).save(p, lossless=True))
    add("webp", "photo-anim.webp", of_photo, lambda p: _save_animated_webp(small, p))
    of_sound = f"encoded by PyAV from {sound_origin}"
    add(
        "wav",
        "sound.wav",
        of_sound,
        lambda p: _write_audio(p, pcm, "wav", "pcm_s16le", stereo=True),
    )
    add("mp3", "sound.mp3", of_sound, lambda p: _write_audio(p, pcm, "mp3", "libmp3lame"))
    add("ogg", "sound-vorbis.ogg", of_sound, lambda p: _write_audio(p, pcm, "ogg", "vorbis", 44100))
    add("ogg", "sound-opus.ogg", of_sound, lambda p: _write_audio(p, pcm, "ogg", "libopus", 48000))
    of_both = f"encoded by PyAV from {photo_origin} and {sound_origin}"
    add(
        "mp4",
        "clip-h264.mp4",
        of_both,
        lambda p: _write_video(p, photo, pcm, "mp4", "libx264", "aac"),
    )
    add(
        "mp4",
        "clip-mpeg4.mp4",
        of_both,
        lambda p: _write_video(p, photo, None, "mp4", "mpeg4", None),
    )
    add(
        "mkv",
        "clip-vp9.mkv",
        of_both,
        lambda p: _write_video(p, photo, pcm, "matroska", "libvpx-vp9", "libopus"),
    )
    add(
        "mkv",
        "clip-h264.mkv",
        of_both,
        lambda p: _write_video(p, photo, pcm, "matroska", "libx264", "flac"),
    )
    add(
        "mp4",
        "clip-40s-seekable.mp4",
        of_both,
        lambda p: _write_video(p, photo, pcm, "mp4", "libx264", "aac", 2, 40.0, (64, 48), 5),
    )
    add(
        "mkv",
        "clip-40s-seekable.mkv",
        of_both,
        lambda p: _write_video(
            p, photo, pcm, "matroska", "libx264", "libopus", 2, 40.0, (64, 48), 5
        ),
    )
    add("pdf", "notes.pdf", "written by pypdf (Helvetica text, Flate streams)", _write_pdf)
    add("pdf", "notes-plain.pdf", "written by pypdf (Helvetica text, plain streams)", _plain_pdf)
    return seeds


def _plain_pdf(path: Path) -> None:
    _write_pdf(path, compress=False)


def _save_jpeg(im: Any, path: Path, progressive: bool) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown turned 90 degrees
    exif[0x010F], exif[0x0110] = "FuzzCam", "FuzzCam One"
    exif.get_ifd(0x8769)[0x9003] = "2021:06:05 14:03:09"
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 29.5), 3: "E", 4: (2.0, 17.0, 40.2)})
    im.save(path, quality=80, progressive=progressive, exif=exif.tobytes())


def _with_alpha(im: Any) -> Any:
    """RGBA with a left-to-right alpha ramp: transparency the decoder must flatten."""
    from PIL import Image

    rgba = im.convert("RGBA")
    w, h = rgba.size
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))))
    return rgba


def _grey16(im: Any) -> Any:
    """16-bit greyscale (mode I;16), which the decoder stretches to 8 bits."""
    from PIL import Image

    return Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257)


def _save_gif(im: Any, path: Path) -> None:
    frames = [im.rotate(angle).convert("P", palette=1, colors=64) for angle in (0, 10, 20)]
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=100, loop=0, transparency=0
    )


def _save_animated_webp(im: Any, path: Path) -> None:
    frames = [im.rotate(angle) for angle in (0, 15)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=200, quality=60)


def _write_audio(
    path: Path, pcm: np.ndarray, muxer: str, codec: str, rate: int = 22050, stereo: bool = False
) -> None:
    """`pcm` (mono, at SOUND_RATE) encoded at `rate`; FFmpeg's own Vorbis encoder only
    takes stereo and is marked experimental."""
    import av

    with av.open(str(path), "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=rate)
        if codec == "vorbis":
            stream.options = {"strict": "experimental"}
            stereo = True
        layout = "stereo" if stereo else "mono"
        stream.layout = layout
        _mux_pcm(container, stream, _resample(pcm, rate), rate, layout)


def _resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Linear resampling from SOUND_RATE: good enough for a seed's content."""
    if rate == SOUND_RATE:
        return pcm
    n = int(len(pcm) * rate / SOUND_RATE)
    return np.interp(np.arange(n) * (SOUND_RATE / rate), np.arange(len(pcm)), pcm).astype(
        np.float32
    )


def _mux_pcm(container: Any, stream: Any, pcm: np.ndarray, rate: int, layout: str) -> None:
    import av

    planes = np.stack([pcm, pcm[::-1]]) if layout == "stereo" else pcm.reshape(1, -1)
    step = 1024
    for start in range(0, planes.shape[1], step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planes[:, start : start + step], dtype=np.float32),
            format="fltp",
            layout=layout,
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _write_video(
    path: Path,
    photo: Any,
    pcm: np.ndarray | None,
    muxer: str,
    codec: str,
    audio_codec: str | None,
    fps: int = 10,
    seconds: float = 2.0,
    size: tuple[int, int] = (160, 120),
    shots: int = 2,
) -> None:
    """A pan across the photo cut into `shots` shots (mirrored or flipped in turn), a keyframe
    every second: real pixels, shot changes, and (when given) the sound under it. Past 30 s
    the decoder walks such a file by seeking."""
    import av
    from PIL import Image, ImageOps

    with av.open(str(path), "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.gop_size = fps
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        elif codec.startswith("libvpx"):
            stream.options = {"deadline": "realtime", "cpu-used": "8", "b": "300k"}
        else:
            stream.bit_rate = 400_000
        astream = None
        if pcm is not None and audio_codec is not None:
            astream = container.add_stream(audio_codec, rate=48000)
            astream.layout = "mono"
            if audio_codec in ("aac", "libopus"):
                astream.bit_rate = 24_000
        frames = int(seconds * fps)
        w, h = photo.size
        for i in range(frames):
            shot = i * shots // frames
            left = int((w - w * 0.6) * (i / max(1, frames - 1)))
            view = photo.crop((left, 0, left + int(w * 0.6), h))
            view = ImageOps.mirror(view) if shot % 2 else view
            view = ImageOps.flip(view) if shot % 4 >= 2 else view
            image = ImageOps.fit(view, size, Image.Resampling.BICUBIC)
            frame = av.VideoFrame.from_image(image).reformat(format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if astream is not None and pcm is not None:
            pcm48 = np.resize(_resample(pcm, 48000), int(seconds * 48000))  # looped
            _mux_pcm(container, astream, pcm48, 48000, "mono")


PDF_TEXT = (
    "Lighthouses guided ships along rocky coasts for centuries. The keeper trimmed the wick "
    "every evening and wound the clockwork that turned the lens.",
    "A quarterly budget review found that travel costs rose by ten percent, and every team "
    "was asked to plan its trips a month ahead.",
    "Sourdough needs a lively starter, flour, water and salt, and a long cool rise overnight "
    "before it is baked in a very hot oven.",
)


def _write_pdf(path: Path, compress: bool = True) -> None:
    """Three pages of real text in a Type 1 font, content streams Flate-compressed or not."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in PDF_TEXT:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        words, lines, line = text.split(), [], ""
        for word in words:
            if len(line) + len(word) > 60:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        lines.append(line)
        body = "".join(f"({ln}) '\n" for ln in lines)
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 12 Tf 14 TL 72 720 Td\n{body}ET\n".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(content)
        if compress:
            page.compress_content_streams()
    writer.add_metadata({"/Title": "Fuzz seed notes"})
    with open(path, "wb") as fh:
        writer.write(fh)


def build_seeds(work: Path, samples: Path | None, formats: Iterable[str]) -> dict[str, list[Seed]]:
    """Seeds per format: the sample sets' (when `samples` is given) and the generated ones."""
    work.mkdir(parents=True, exist_ok=True)
    found = sample_seeds(samples, work) if samples is not None else []
    found += generated_seeds(work, samples)
    by_format: dict[str, list[Seed]] = {fmt: [] for fmt in formats}
    for seed in found:
        if seed.format in by_format:
            by_format[seed.format].append(seed)
    return by_format


# --- mutations ------------------------------------------------------------------------------


def _position(data: bytes, rng: np.random.Generator) -> int:
    """A byte offset, biased to the ends, where headers, indexes (moov, cues, xref) live."""
    n = len(data)
    if n == 0:
        return 0
    r = rng.random()
    if r < 0.4:
        return int(rng.integers(0, min(n, _EDGE)))
    if r < 0.6:
        return int(rng.integers(max(0, n - _EDGE), n))
    return int(rng.integers(0, n))


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    cut = (
        int(rng.integers(0, min(len(data), 1024))) if rng.random() < 0.35 else _position(data, rng)
    )
    return data[:cut]


def _flip_bits(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 33)) if out else 0):
        out[_position(data, rng)] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _overwrite_run(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    pos = _position(data, rng)
    run = rng.bytes(int(rng.integers(1, 257)))
    return data[:pos] + run + data[pos + len(run) :]


def _special_ints(data: bytes, rng: np.random.Generator) -> bytes:
    """Sizes, counts and offsets set to edge values: 0, -1, 2^31 and friends (bomb fodder)."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        width = int(rng.choice([1, 2, 4]))
        if len(out) < width:
            break
        pos = min(_position(data, rng), len(out) - width)
        value = int(rng.choice(_SPECIAL)) & ((1 << (8 * width)) - 1)
        order = "big" if rng.random() < 0.5 else "little"
        out[pos : pos + width] = value.to_bytes(width, order)
    return bytes(out)


def _duplicate_chunk(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    start = _position(data, rng)
    chunk = data[start : start + int(rng.integers(1, 4097))]
    at = _position(data, rng)
    return data[:at] + chunk * int(rng.integers(1, 4)) + data[at:]


def _remove_chunk(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    start = _position(data, rng)
    return data[:start] + data[start + int(rng.integers(1, 4097)) :]


def _tweak_digits(data: bytes, rng: np.random.Generator) -> bytes:
    """ASCII digits changed: object numbers, /Length and xref offsets in a PDF."""
    digits = np.flatnonzero((np.frombuffer(data, dtype=np.uint8) - 48) < 10)
    if digits.size == 0:
        return _flip_bits(data, rng)
    out = bytearray(data)
    for pos in rng.choice(digits, size=min(digits.size, int(rng.integers(1, 5)))):
        out[int(pos)] = 48 + int(rng.integers(0, 10))
    return bytes(out)


def _header_garbage(data: bytes, rng: np.random.Generator) -> bytes:
    keep = int(rng.integers(4, max(5, min(len(data), 2048))))
    return data[:keep] + rng.bytes(max(0, len(data) - keep))


_SIMPLE = {
    "truncate": _truncate,
    "flip_bits": _flip_bits,
    "overwrite_run": _overwrite_run,
    "special_ints": _special_ints,
    "duplicate_chunk": _duplicate_chunk,
    "remove_chunk": _remove_chunk,
    "header_garbage": _header_garbage,
    "tweak_digits": _tweak_digits,
}


def repair_png_crcs(data: bytes) -> bytes:
    """Recompute every PNG chunk's CRC that lies wholly inside the data."""
    out = bytearray(data)
    pos = 8
    while pos + 12 <= len(out):
        length = int.from_bytes(out[pos : pos + 4], "big")
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = zlib.crc32(out[pos + 4 : end]).to_bytes(4, "big")
        pos = end + 4
    return bytes(out)


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC = _ogg_crc_table()


def _ogg_crc(page: bytes | bytearray) -> int:
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[(crc >> 24) ^ byte]
    return crc


def repair_ogg_crcs(data: bytes) -> bytes:
    """Recompute the CRC of every Ogg page ("OggS" capture) that lies wholly inside the data."""
    out = bytearray(data)
    pos = out.find(b"OggS")
    while pos != -1 and pos + 27 <= len(out):
        nsegs = out[pos + 26]
        table = out[pos + 27 : pos + 27 + nsegs]
        end = pos + 27 + nsegs + sum(table)
        if len(table) == nsegs and end <= len(out):
            out[pos + 22 : pos + 26] = b"\0\0\0\0"
            out[pos + 22 : pos + 26] = _ogg_crc(out[pos:end]).to_bytes(4, "little")
        pos = out.find(b"OggS", pos + 4)
    return bytes(out)


def mutate(data: bytes, ext: str, rng: np.random.Generator) -> tuple[bytes, str, str]:
    """(mutated bytes, extension, description) for one case, drawn from `rng`; PNG and Ogg
    checksums are mostly made right again afterwards (see REPAIR_CHECKSUMS)."""
    new, new_ext, what = _mutate(data, ext, rng)
    if new != data and rng.random() < REPAIR_CHECKSUMS:
        if new.startswith(b"\x89PNG"):
            new, what = repair_png_crcs(new), f"{what}+png_crcs"
        elif b"OggS" in new[:_EDGE]:
            new, what = repair_ogg_crcs(new), f"{what}+ogg_crcs"
    return new, new_ext, what


def _mutate(data: bytes, ext: str, rng: np.random.Generator) -> tuple[bytes, str, str]:
    names = list(MUTATIONS)
    weights = np.array([MUTATIONS[n] for n in names])
    kind = str(rng.choice(names, p=weights / weights.sum()))
    if kind == "zero_length":
        return b"", ext, kind
    if kind == "wrong_extension":
        new_ext = str(rng.choice([e for e in OTHER_EXTENSIONS if e != ext]))
        if rng.random() < 0.5:  # half of them damaged as well
            data = _flip_bits(data, rng)
            return data, new_ext, f"wrong_extension({new_ext or 'none'})+flip_bits"
        return data, new_ext, f"wrong_extension({new_ext or 'none'})"
    if kind == "stacked":
        simple = [n for n in _SIMPLE if n != "header_garbage"]
        steps = [str(s) for s in rng.choice(simple, size=int(rng.integers(2, 5)))]
        for step in steps:
            data = _SIMPLE[step](data, rng)
        return data, ext, "+".join(steps)
    return _SIMPLE[kind](data, rng), ext, kind


@dataclass
class Case:
    id: str
    format: str
    seed: str  # seed file name
    mutation: str
    ext: str
    size: int
    path: str = ""


def make_cases(seeds: dict[str, list[Seed]], cases: int, seed: int, work: Path) -> list[Case]:
    """`cases` per format, interleaved across formats; the first of each format's cases are
    its seeds unchanged (they must index, or the campaign measures nothing)."""
    (work / "cases").mkdir(parents=True, exist_ok=True)
    per_format: list[list[Case]] = []
    cache: dict[Path, bytes] = {}
    for fmt, fmt_seeds in seeds.items():
        out: list[Case] = []
        for i in range(cases if fmt_seeds else 0):
            rng = np.random.default_rng([seed, FORMATS.index(fmt), i])
            pick = i if i < len(fmt_seeds) else int(rng.integers(0, len(fmt_seeds)))
            chosen = fmt_seeds[pick]
            data = cache.setdefault(chosen.path, chosen.path.read_bytes())
            ext = chosen.path.suffix.lower()
            if i < len(fmt_seeds):
                new, new_ext, what = data, ext, "none (seed as is)"
            else:
                new, new_ext, what = mutate(data, ext, rng)
            case = Case(f"{fmt}-{i:05d}", fmt, chosen.path.name, what, new_ext, len(new))
            case.path = str(work / "cases" / f"{case.id}{new_ext}")
            Path(case.path).write_bytes(new)
            out.append(case)
        per_format.append(out)
    interleaved = [c for group in _zip_longest(per_format) for c in group]
    return interleaved


def _zip_longest(groups: list[list[Case]]) -> Iterable[list[Case]]:
    for i in range(max((len(g) for g in groups), default=0)):
        yield [g[i] for g in groups if i < len(g)]


# --- crafted hostile files ---------------------------------------------------------------------


def _png(width: int, height: int, colour: int = 6, rows: int | None = None) -> bytes:
    """A PNG of zero pixels; `rows` cuts the image data short (the header still says all)."""
    channels = {0: 1, 2: 3, 6: 4}[colour]

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, colour, 0, 0, 0])
    packer = zlib.compressobj(9)
    row = bytes(1 + width * channels)
    idat = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    idat += packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _wav(rate: int, channels: int, frames: int, declared: int | None = None) -> bytes:
    """16-bit PCM WAV of a quiet ramp; `declared` overrides the data chunk's size."""
    data = (np.arange(frames * channels) % 512 - 256).astype("<i2").tobytes()
    size = len(data) if declared is None else declared
    fmt = (1).to_bytes(2, "little") + channels.to_bytes(2, "little")
    fmt += rate.to_bytes(4, "little") + (rate * channels * 2 & 0xFFFFFFFF).to_bytes(4, "little")
    fmt += (channels * 2 & 0xFFFF).to_bytes(2, "little") + (16).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + size.to_bytes(4, "little") + data
    return b"RIFF" + min(len(body), 0xFFFFFFFF).to_bytes(4, "little") + body


def _gif_huge() -> bytes:
    """A GIF whose screen and single frame claim 65535 x 65535 pixels, with 4 pixels of data."""
    screen = b"GIF89a" + (65535).to_bytes(2, "little") * 2 + bytes([0x80, 0, 0]) + bytes(6)
    frame = b"," + bytes(4) + (65535).to_bytes(2, "little") * 2 + b"\0"
    return screen + frame + bytes([2, 2, 0x4C, 0x01, 0]) + b";"


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Set the frame header's (SOFn) size of a JPEG."""
    out = bytearray(data)
    pos = 2
    while pos + 4 <= len(out) and out[pos] == 0xFF:
        marker, length = out[pos + 1], int.from_bytes(out[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            out[pos + 5 : pos + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
            break
        pos += 2 + length
    return bytes(out)


def _pdf_content_bomb(pages: int) -> bytes:
    """`pages` pages that all show one Flate stream of 2 million text operations (64 MB
    inflated from about 150 kB): the whole file stays small, the text work does not."""
    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, NumberObject, StreamObject

    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    body = b"BT /F1 12 Tf 72 720 Td\n" + b"(lighthouse keeper) Tj 0 -14 Td\n" * 2_000_000 + b"ET\n"
    stream = StreamObject()
    stream._data = zlib.compress(body, 9)
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    stream[NameObject("/Length")] = NumberObject(len(stream._data))
    content = writer._add_object(stream)
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        page[NameObject("/Contents")] = content
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _pdf_raw(objects: list[bytes]) -> bytes:
    """A PDF from raw object bodies (object 1 is the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _pdf_page_cycle() -> bytes:
    """A page tree whose /Kids holds the tree itself."""
    return _pdf_raw(
        [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"]
    )


def _pdf_deep_nesting(depth: int = 100_000) -> bytes:
    """A page whose content stream opens `depth` arrays: recursion in the parser."""
    content = b"[" * depth + b"]" * depth + b"\nBT /F1 12 Tf 72 720 Td (deep) Tj ET"
    stream = f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"
    return _pdf_raw(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            stream,
        ]
    )


def _pdf_pages(contents: list[bytes], shared: bool = False) -> bytes:
    """A PDF of one page per content stream in Helvetica; `shared` shows the first stream on
    every page (one object, so the file stays small)."""
    count = len(contents)
    streams = contents[:1] if shared else contents
    first_stream = 3 + count
    font = first_stream + len(streams)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{3 + i} 0 R' for i in range(count))}] "
        f"/Count {count} >>".encode(),
    ]
    for i in range(count):
        ref = first_stream if shared else first_stream + i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {ref} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
    for data in streams:
        objects.append(f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _pdf_raw(objects)


def _text_ops(text: str, repeat: int = 1) -> bytes:
    line = f"({text}) Tj 0 -14 Td\n".encode("latin-1")
    return b"BT /F1 12 Tf 72 720 Td\n" + line * repeat + b"ET"


def pdf_one_bad_page() -> bytes:
    """Three pages; the middle one's content has a broken hex string, which pypdf raises on."""
    return _pdf_pages(
        [
            _text_ops("The lighthouse keeper trimmed the wick every evening."),
            b"BT /F1 12 Tf 72 720 Td <48zz69> Tj ET",
            _text_ops("Sourdough needs a lively starter and a long cool rise."),
        ]
    )


def pdf_slow_pages(pages: int = 40, page_bytes: int = 1_900_000) -> bytes:
    """`pages` pages showing one uncompressed stream of `page_bytes` of text operations:
    each page is just under the decoder's content limit, together they take minutes."""
    line = "(every page repeats this line of text) Tj 0 -14 Td\n"
    return _pdf_pages([_text_ops(line[1:-15], page_bytes // len(line))] * pages, shared=True)


def mkv_1hz_audio() -> bytes:
    """A real little video whose PCM sound track's header says 1 Hz (20 000 samples: 5.5 h)."""
    import struct

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        video = container.add_stream("mpeg4", rate=2)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=1000)
        sound.layout = "mono"
        for i in range(4):
            pixels = np.full((48, 64, 3), 40 + 50 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 2)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        pcm = (np.arange(20000) % 200 - 100).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 1000, 0, Fraction(1, 1000)
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    data = buf.getvalue()
    rate = b"\xb5\x88" + struct.pack(">d", 1000.0)  # Matroska SamplingFrequency, float64
    assert data.count(rate) == 1
    return data.replace(rate, b"\xb5\x88" + struct.pack(">d", 1.0))


CRAFTED: dict[str, tuple[str, str, str]] = {
    # name -> (format, extension, what it is)
    "png-400mpx-header": ("png", ".png", "IHDR claims 20000 x 20000, data cut short"),
    "png-100mpx-zeros": ("png", ".png", "9999 x 9999 RGBA of zeros: 390 kB, 400 MB of pixels"),
    "gif-65535-square": ("gif", ".gif", "screen and frame claim 65535 x 65535"),
    "jpeg-65500-square": ("jpeg", ".jpg", "a real JPEG whose SOF claims 65500 x 65500"),
    "webp-16384-square": ("webp", ".webp", "a lossless WebP whose header claims 16384 x 16384"),
    "wav-1hz": ("wav", ".wav", "100 000 samples at 1 Hz: 200 kB, 28 hours"),
    "wav-4gb-declared": ("wav", ".wav", "data chunk claims 4 GB, holds 0.1 s"),
    "wav-65535-channels": ("wav", ".wav", "65535 channels at 48 kHz"),
    "mkv-1hz-audio": ("mkv", ".mkv", "a video whose PCM sound track claims 1 Hz"),
    "pdf-content-bomb-20-pages": ("pdf", ".pdf", "20 pages share one 64 MB content stream"),
    "pdf-page-tree-cycle": ("pdf", ".pdf", "/Pages lists itself as its kid"),
    "pdf-deep-nesting": ("pdf", ".pdf", "a content stream 100 000 arrays deep"),
    "pdf-one-bad-page": ("pdf", ".pdf", "3 pages, the second with a broken hex string"),
    "pdf-slow-pages": ("pdf", ".pdf", "40 pages share one 1.9 MB content stream"),
}


def crafted_cases(work: Path, seeds: dict[str, list[Seed]], names: Iterable[str]) -> list[Case]:
    """Hand-made hostile files (decompression bombs, absurd headers, cycles): no random
    mutation is likely to write them, yet each is a few bytes away from a real file."""
    from PIL import Image

    (work / "crafted").mkdir(parents=True, exist_ok=True)
    makers: dict[str, Callable[[], bytes]] = {
        "png-400mpx-header": lambda: _png(20000, 20000, colour=0, rows=50),
        "png-100mpx-zeros": lambda: _png(9999, 9999, colour=6),
        "gif-65535-square": _gif_huge,
        "wav-1hz": lambda: _wav(1, 1, 100_000),
        "wav-4gb-declared": lambda: _wav(48000, 1, 4800, declared=0xFFFFFFF0),
        "wav-65535-channels": lambda: _wav(48000, 65535, 4),
        "mkv-1hz-audio": mkv_1hz_audio,
        "pdf-content-bomb-20-pages": lambda: _pdf_content_bomb(20),
        "pdf-page-tree-cycle": _pdf_page_cycle,
        "pdf-deep-nesting": _pdf_deep_nesting,
        "pdf-one-bad-page": pdf_one_bad_page,
        "pdf-slow-pages": pdf_slow_pages,
    }
    jpeg = next((s.path for s in seeds.get("jpeg", [])), None)
    if jpeg is not None:
        makers["jpeg-65500-square"] = lambda: _patch_jpeg_size(jpeg.read_bytes(), 65500, 65500)

    def webp() -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "WEBP", lossless=True)
        data = bytearray(buf.getvalue())
        data[21:25] = (0x3FFF | 0x3FFF << 14).to_bytes(4, "little")  # VP8L width-1, height-1
        return bytes(data)

    makers["webp-16384-square"] = webp
    cases = []
    for name in names:
        if name not in makers:
            continue
        fmt, ext, what = CRAFTED[name]
        data = makers[name]()
        case = Case(f"crafted-{name}", fmt, "crafted", f"crafted: {what}", ext, len(data))
        case.path = str(work / "crafted" / f"{name}{ext}")
        Path(case.path).write_bytes(data)
        cases.append(case)
    return cases


# --- the worker (child process) -------------------------------------------------------------


def _check_segment(seg: Any) -> str | None:
    """Why a segment would upset an encoder, or None: the decoders' output contract."""
    payload = seg.payload
    if seg.space == "clip":
        size = getattr(payload, "size", (0, 0))
        if getattr(payload, "mode", None) != "RGB" or min(size) <= 0:
            return f"clip payload {type(payload).__name__} {getattr(payload, 'mode', '')} {size}"
    elif seg.space == "clap":
        pcm = np.asarray(payload)
        if pcm.ndim != 1 or pcm.size == 0 or pcm.dtype != np.float32 or not np.isfinite(pcm).all():
            return f"clap payload {pcm.dtype} shape {pcm.shape}"
    elif seg.space == "text":
        if not isinstance(payload, str) or not payload.strip():
            return "empty text payload"
    for t in (seg.start, seg.end):
        if t is not None and not math.isfinite(t):
            return f"segment time {t}"
    if seg.start is not None and seg.end is not None and seg.end < seg.start:
        return f"segment ends before it starts ({seg.start} > {seg.end})"
    return None


def _where(exc: BaseException) -> str:
    """file:line in function of the innermost frame in this repo (else the innermost)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if str(REPO) in f.filename and "fuzz_decoders" not in f.filename]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return ""
    name = frame.filename
    name = str(Path(name).relative_to(REPO)) if name.startswith(str(REPO)) else Path(name).name
    return f"{name}:{frame.lineno} in {frame.name}"


def run_case(path: str, decode: Callable[..., Any], config: Any) -> dict[str, Any]:
    """Decode one file as the indexer does and say what became of it."""
    from searchengine.errors import DecodeError, Skip

    started = time.perf_counter()
    result: dict[str, Any] = {"segments": 0, "speech_samples": 0}
    try:
        decoded = decode(path, config)
        result["file_type"] = decoded.file_type
        parts = [decoded.segments, *(decoded.stream or ())]
        for part in parts:
            for seg in part:
                bad = _check_segment(seg)
                if bad:
                    raise AssertionError(f"malformed segment: {bad}")
            result["segments"] += len(part)
        if decoded.speech_source is not None:
            for _start, pcm in decoded.speech_source():
                result["speech_samples"] += len(pcm)
        if result["segments"]:
            result["outcome"] = "indexed"
        else:
            result.update(outcome="skipped", reason="nothing to index in this file")
    except Skip as exc:
        result.update(outcome="skipped", reason=str(exc), exc="Skip")
    except DecodeError as exc:
        result.update(outcome="failed", reason=str(exc), exc="DecodeError")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - exactly what is being looked for
        result.update(
            outcome="unexpected",
            exc=type(exc).__name__,
            reason=str(exc).splitlines()[0][:300] if str(exc) else "",
            where=_where(exc),
        )
    result["seconds"] = round(time.perf_counter() - started, 4)
    return result


def worker_main(decoder: str, mem_mb: int) -> None:
    """Read case paths from stdin, one JSON line each; answer one JSON line per case."""
    import resource

    if mem_mb > 0:
        limit = mem_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # native libraries that print to stdout must not garble the answers
    import importlib

    from searchengine.config import IndexConfig

    module_name, func_name = decoder.split(":")
    decode = getattr(importlib.import_module(module_name), func_name)
    for name in ("image", "audio", "video", "text"):  # import time is not case time
        importlib.import_module(f"searchengine.media.{name}")
    importlib.import_module("pypdf")
    config = IndexConfig()
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        result = run_case(request["path"], decode, config)
        result["id"] = request["id"]
        out.write(json.dumps(result) + "\n")


# --- the campaign (parent) --------------------------------------------------------------------


@dataclass
class Options:
    timeout: float = 120.0
    jobs: int = 1
    mem_mb: int = 2048
    decoder: str = DECODER
    threads: int = 1
    keep: Path | None = None
    progress: bool = False


class _Worker:
    """One child process and the case it is on."""

    def __init__(self, opts: Options) -> None:
        env = dict(os.environ)
        env.update(
            SEARCHENGINE_THREADS=str(opts.threads),
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MALLOC_ARENA_MAX="2",  # per-thread arenas would eat the address-space cap
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        )
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        cmd += ["--decoder", opts.decoder, "--mem-mb", str(opts.mem_mb)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=str(REPO),
            start_new_session=True,
        )
        self.buf = b""
        self.case: Case | None = None
        self.ready = False
        self.deadline = time.monotonic() + max(120.0, opts.timeout)
        self.sent_at = 0.0
        os.set_blocking(self.proc.stdout.fileno(), False)  # type: ignore[union-attr]

    def send(self, case: Case, timeout: float) -> None:
        self.case = case
        self.sent_at = time.monotonic()
        self.deadline = self.sent_at + timeout
        line = json.dumps({"id": case.id, "path": case.path}) + "\n"
        self.proc.stdin.write(line.encode())  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def read_lines(self) -> tuple[list[dict[str, Any]], bool]:
        """Complete answers so far, and whether the worker's stdout has closed."""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        closed = False
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                closed = True
                break
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(x) for x in lines if x.strip()], closed


def _death(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def run_campaign(cases: list[Case], opts: Options) -> list[dict[str, Any]]:
    """Decode every case in `opts.jobs` workers; one result dict per case, in case order."""
    results: dict[str, dict[str, Any]] = {}
    todo = list(reversed(cases))
    sel = selectors.DefaultSelector()
    workers: list[_Worker] = []
    started = time.monotonic()

    def spawn() -> None:
        w = _Worker(opts)
        workers.append(w)
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)  # type: ignore[arg-type]

    def retire(w: _Worker) -> None:
        sel.unregister(w.proc.stdout)  # type: ignore[arg-type]
        w.kill()
        workers.remove(w)

    def record(case: Case, result: dict[str, Any]) -> None:
        row = asdict(case)
        row.pop("path")
        row.update(result)
        results[case.id] = row
        if row["outcome"] in ("unexpected", "crash", "hang"):
            if opts.keep is not None:
                opts.keep.mkdir(parents=True, exist_ok=True)
                keep = opts.keep / Path(case.path).name
                keep.write_bytes(Path(case.path).read_bytes())
                row["kept"] = str(keep)
            if opts.progress:
                print(
                    f"  {case.id} {row['outcome']}: {row.get('exc', '')} {row.get('reason', '')}"
                    f" [{case.mutation}]",
                    file=sys.stderr,
                )
        else:
            Path(case.path).unlink(missing_ok=True)
        if opts.progress and len(results) % 100 == 0:
            rate = len(results) / (time.monotonic() - started)
            print(f"  {len(results)}/{len(cases)} cases ({rate:.1f}/s)", file=sys.stderr)

    try:
        for _ in range(max(1, min(opts.jobs, len(cases)))):
            spawn()
        while todo or any(w.case is not None for w in workers):
            for w in workers:
                if w.ready and w.case is None and todo:
                    w.send(todo.pop(), opts.timeout)
            now = time.monotonic()
            wait = min((w.deadline for w in workers), default=now + 1) - now
            events = sel.select(timeout=max(0.01, min(wait, 1.0)))
            for key, _ in events:
                w = key.data
                answers, closed = w.read_lines()
                for answer in answers:
                    if answer.get("ready"):
                        w.ready = True
                    elif w.case is not None and answer.get("id") == w.case.id:
                        record(w.case, answer)
                        w.case = None
                if closed:
                    case = w.case
                    retire(w)
                    if case is None and not w.ready:
                        raise RuntimeError(
                            f"fuzz worker did not start ({_death(w.proc.returncode)})"
                        )
                    if case is not None:
                        seconds = round(time.monotonic() - w.sent_at, 4)
                        record(
                            case,
                            {
                                "outcome": "crash",
                                "reason": _death(w.proc.returncode),
                                "seconds": seconds,
                            },
                        )
                    if todo:
                        spawn()
            now = time.monotonic()
            for w in list(workers):
                if now < w.deadline or (w.ready and w.case is None):
                    continue
                case = w.case
                retire(w)
                if case is None:
                    raise RuntimeError("fuzz worker did not start in time")
                record(
                    case,
                    {
                        "outcome": "hang",
                        "reason": f"over the {opts.timeout:g} s limit",
                        "seconds": round(now - w.sent_at, 4),
                    },
                )
                if todo:
                    spawn()
    finally:
        for w in list(workers):
            retire(w)
        sel.close()
    return [results[c.id] for c in cases]


# --- the report ---------------------------------------------------------------------------------


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-format (and total) counts of each outcome, and time spent."""
    table: dict[str, dict[str, Any]] = {}
    for key in [*dict.fromkeys(r["format"] for r in rows), "total"]:
        mine = [r for r in rows if key == "total" or r["format"] == key]
        counts = Counter(r["outcome"] for r in mine)
        times = [r.get("seconds", 0.0) for r in mine if r["outcome"] != "hang"]
        table[key] = {
            "cases": len(mine),
            **{o: counts.get(o, 0) for o in OUTCOMES},
            "seconds": round(sum(r.get("seconds", 0.0) for r in mine), 1),
            "slowest": round(max(times, default=0.0), 2),
        }
    return table


def markdown(rows: list[dict[str, Any]], seeds: dict[str, list[Seed]], command: str) -> str:
    """The per-format table of mutated cases, the crafted files one by one, what needs a fix,
    and the seeds."""
    crafted = [r for r in rows if r["seed"] == "crafted"]
    table = summarise([r for r in rows if r["seed"] != "crafted"])
    lines = [
        f"Command: `{command}`",
        "",
        "| format | seeds | cases | indexed | failed / skipped | unexpected exceptions | "
        "crashes | hangs | decode time (s) | slowest case (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, t in table.items():
        n_seeds = sum(len(v) for v in seeds.values()) if key == "total" else len(seeds.get(key, []))
        name = f"**{key}**" if key == "total" else key
        lines.append(
            f"| {name} | {n_seeds} | {t['cases']} | {t['indexed']} "
            f"| {t['failed']} / {t['skipped']} | {t['unexpected']} | {t['crash']} "
            f"| {t['hang']} | {t['seconds']} | {t['slowest']} |"
        )
    if crafted:
        lines += [
            "",
            "| crafted file | what it is | outcome | reason | time (s) |",
            "| --- | --- | --- | --- | ---: |",
        ]
        for r in crafted:
            what = r["mutation"].removeprefix("crafted: ")
            reason = str(r.get("reason", "")).replace("|", "/")[:90]
            lines.append(
                f"| {r['id'].removeprefix('crafted-')} | {what} | {r['outcome']} | {reason} "
                f"| {r.get('seconds', 0):.2f} |"
            )
    bad = [r for r in rows if r["outcome"] in ("unexpected", "crash", "hang")]
    if bad:
        lines += ["", "Cases that need a fix:", ""]
        for r in bad[:50]:
            lines.append(
                f"- {r['id']} ({r['seed']}, {r['mutation']}): {r['outcome']} "
                f"{r.get('exc', '')} {r.get('reason', '')} {r.get('where', '')}".rstrip()
            )
    lines += ["", "Seeds:", ""]
    for fmt, fmt_seeds in seeds.items():
        for s in fmt_seeds:
            lines.append(f"- {fmt}: {s.path.name} ({s.path.stat().st_size} bytes): {s.origin}")
    return "\n".join(lines)


def top_reasons(rows: list[dict[str, Any]], n: int = 8) -> list[tuple[str, int]]:
    """Most common failure reasons, numbers stripped so that alike messages group."""
    import re

    reasons = Counter(
        f"{r['format']}: " + re.sub(r"\d+", "N", r.get("reason", ""))[:120]
        for r in rows
        if r["outcome"] in ("failed", "skipped")
    )
    return reasons.most_common(n)


def fuzz(
    formats: Sequence[str],
    cases: int,
    seed: int,
    work: Path,
    samples: Path | None,
    opts: Options,
    crafted: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, list[Seed]]]:
    """Build seeds and cases in `work` (plus the crafted files of these formats when
    `crafted`), run them; (per-case rows, seeds)."""
    seeds = build_seeds(work / "seeds", samples, formats)
    todo = make_cases(seeds, cases, seed, work)
    if crafted:
        names = [name for name, (fmt, _, _) in CRAFTED.items() if fmt in formats]
        todo += crafted_cases(work, seeds, names)
    return run_campaign(todo, opts), seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300, help="cases per format")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--out", type=Path, help="write every case's result here (JSON)")
    parser.add_argument("--samples", type=Path, default=REPO / "samples")
    parser.add_argument("--no-samples", action="store_true", help="generated seeds only")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds a case may take (PDFs stop at 60)"
    )
    parser.add_argument("--no-crafted", action="store_true", help="mutated cases only")
    parser.add_argument("--mem-mb", type=int, default=2048, help="a worker's address space")
    parser.add_argument("--keep", type=Path, help="copy cases that crash, hang or raise here")
    parser.add_argument("--work", type=Path, help="folder for seeds and cases (default: temp)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--decoder", default=DECODER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.decoder, args.mem_mb)
        return 0
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown formats {unknown}; choose from {','.join(FORMATS)}")
    samples = None if args.no_samples or not args.samples.is_dir() else args.samples
    opts = Options(args.timeout, args.jobs, args.mem_mb, keep=args.keep, progress=True)
    command = "python scripts/fuzz_decoders.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        work = args.work or Path(tmp)
        started = time.monotonic()
        rows, seeds = fuzz(
            formats, args.cases, args.seed, work, samples, opts, crafted=not args.no_crafted
        )
        wall = time.monotonic() - started
        print(markdown(rows, seeds, command))
        print(
            f"\nWall time {wall:.0f} s, {args.jobs} worker(s), {args.timeout:g} s limit a case, "
            f"{args.mem_mb} MB address space a worker."
        )
        print("\nMost common reasons (failed / skipped):\n")
        for reason, count in top_reasons(rows, 15):
            print(f"- {count} x {reason}")
        if args.out:
            report = {
                "command": command,
                "wall_seconds": round(wall, 1),
                "summary": summarise(rows),
                "seeds": {
                    f: [{"file": s.path.name, "origin": s.origin} for s in v]
                    for f, v in seeds.items()
                },
                "cases": rows,
            }
            args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    bad = sum(1 for r in rows if r["outcome"] in ("unexpected", "crash", "hang"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
