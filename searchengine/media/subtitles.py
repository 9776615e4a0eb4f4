"""Subtitles of a video as transcript lines: a sidecar `.srt`/`.vtt` next to it (same
name, optionally with a language: `film.en.srt`) or a text subtitle stream inside it
(MKV/MP4, read with PyAV). When a video has them, they stand in for speech-to-text."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from searchengine.errors import DecodeError
from searchengine.types import Segment

SIDE_EXT = (".srt", ".vtt")
MAX_SIDE_BYTES = 5_000_000
"""A subtitle file larger than this is not a subtitle file (a feature film's is ~100 kB)."""

_TIME = re.compile(
    r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})\s*-->\s*(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
)
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def _clean(text: str) -> str:
    return " ".join(_TAG.sub(" ", text).replace("\\N", " ").split())


def parse(text: str) -> list[tuple[float, float, str]]:
    """(start, end, line) cues of SRT or WebVTT text; DecodeError when none is found."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = block.strip().split("\n")
        for i, line in enumerate(lines):
            m = _TIME.search(line)
            if m:
                start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
                words = _clean(" ".join(lines[i + 1 :]))
                if words and end >= start:
                    cues.append((start, end, words))
                break
    if not cues:
        raise DecodeError("no subtitle cues (not SRT or WebVTT)")
    return cues


def sidecars(video: str) -> list[str]:
    """Subtitle files next to a video: `name.srt`, `name.vtt`, `name.LANG.srt`..."""
    p = Path(video)
    out = []
    try:
        names = os.listdir(p.parent)
    except OSError:
        return []
    for name in sorted(names):
        low = name.lower()
        if low.endswith(SIDE_EXT) and (
            name.startswith(p.stem + ".") and name[len(p.stem) + 1 :].count(".") <= 1
        ):
            out.append(str(p.parent / name))
    return out


def read_sidecar(path: str) -> list[tuple[float, float, str]]:
    size = os.path.getsize(path)
    if size > MAX_SIDE_BYTES:
        raise DecodeError(f"subtitle file of {size / 1e6:.0f} MB")
    from searchengine.media.text import bytes_to_str

    with open(path, "rb") as fh:
        return parse(bytes_to_str(fh.read())[0])


def read_streams(container: Any) -> list[tuple[float, float, str]]:
    """Cues of the text subtitle streams in an open PyAV container (bitmap ones carry no
    text and give none)."""
    cues: list[tuple[float, float, str]] = []
    streams = list(container.streams.subtitles)
    if not streams:
        return cues
    for packet in container.demux(*streams):
        tb = packet.stream.time_base
        if packet.pts is None or tb is None:
            continue
        start = float(packet.pts * tb)
        end = start + float((packet.duration or 0) * tb)
        for sub in packet.decode():  # PyAV >= 13 yields the rects themselves
            for rect in sub.rects if hasattr(sub, "rects") else [sub]:
                words = _rect_text(rect)
                if words:
                    cues.append((start, max(end, start), words))
    return cues


def _rect_text(rect: Any) -> str:
    dialogue = getattr(rect, "dialogue", None)  # PyAV >= 13: the event's text alone
    if dialogue:
        return _clean(dialogue.decode("utf-8", "replace"))
    raw = getattr(rect, "ass", None)
    raw = raw or getattr(rect, "text", None)
    if not raw:
        return ""
    raw = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if raw.startswith("Dialogue:"):  # a full ASS event: the text follows the 9th comma
        raw = raw.split(",", 9)[-1]
    elif raw.count(",") >= 8 and raw.split(",", 1)[0].isdigit():
        raw = raw.split(",", 8)[-1]  # libavcodec's ASS event without its prefix
    return _clean(raw)


def subtitle_segments(video: str, container: Any) -> tuple[list[Segment], dict[str, Any]]:
    """Transcript segments from subtitles, and what to record: where they came from, and
    the reason a broken subtitle file was not used (the video indexes anyway)."""
    meta: dict[str, Any] = {}
    cues: list[tuple[float, float, str]] = []
    for side in sidecars(video):
        try:
            cues = read_sidecar(side)
            meta["subtitles"] = os.path.basename(side)
            break
        except (DecodeError, OSError) as exc:
            meta.setdefault("subtitle_errors", []).append(f"{os.path.basename(side)}: {exc}")
    if not cues and container is not None:
        try:
            cues = read_streams(container)
        except Exception as exc:  # PyAV raises many kinds on damaged streams
            meta.setdefault("subtitle_errors", []).append(f"subtitle stream: {exc}")
            cues = []
        if cues:
            meta["subtitles"] = "stream"
    segs = [
        Segment("text", "speech", start, end, text=words, payload=words)
        for start, end, words in _dedupe(cues)
    ]
    return segs, meta


def _dedupe(cues: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []
    for cue in sorted(cues):
        if out and out[-1][2] == cue[2] and cue[0] <= out[-1][1] + 0.5:
            out[-1] = (out[-1][0], max(out[-1][1], cue[1]), cue[2])
        else:
            out.append(cue)
    return out
