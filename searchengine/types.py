"""Small dataclasses that carry data across module boundaries (media, encoders, store, search)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from searchengine.understand import Reading

FILE_TYPES = ("text", "image", "audio", "video")
"""Modalities a file can have; `--type` accepts these."""

STATES = ("indexed", "pending", "failed", "skipped")
"""Per-file states: pending waits for a model, failed/skipped carry a reason."""


@dataclass(slots=True)
class Segment:
    """A unit of retrieval inside a file, before it is stored.

    `start`/`end` are character offsets for text and seconds for audio/video; both are None
    for a whole image. `payload` is what the space's encoder embeds (a string, an RGB image,
    a PCM array); it is never stored. `loc` says where in the file the segment is, beyond
    start/end: `{"page": 3}` (1-based PDF page), `{"box": [x, y, w, h]}` (pixels of the
    original image), or both; stored as JSON, None when there is nothing to add.
    """

    space: str
    kind: str
    start: float | None = None
    end: float | None = None
    text: str | None = None
    payload: Any = None
    loc: dict[str, Any] | None = None


@dataclass(slots=True)
class Decoded:
    """What decoding one file yields: its modality, segments and catalog metadata.

    Long media cannot be held whole in memory: their decoders leave `segments` short and put
    the rest in `stream`, an iterator of small segment lists consumed (and embedded) one at a
    time. `speech_source`, when set, yields (start_seconds, mono float32 PCM at 16 kHz)
    chunks for speech-to-text.
    """

    file_type: str
    segments: list[Segment] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    stream: Iterator[list[Segment]] | None = None
    speech_source: Callable[[], Iterator[tuple[float, Any]]] | None = None


@dataclass(slots=True)
class Filters:
    """Restrictions applied inside retrieval (never after taking k), so pages stay full.

    `path_glob` is a SQLite GLOB over absolute paths; dates are epoch seconds (a photo's EXIF
    date, else the file's modification time); durations are seconds (audio and video only);
    `place` is a folded place name (understand.words.fold) of files taken there (from GPS);
    `exclude` lists file ids never to return (an example file and its exact copies);
    `model` keeps only vectors made by that model (set by the store while a model switch is
    half done: a query is never scored against another model's vectors);
    `speaker` keeps files in which that speaker (searchengine/speakers.py) talks.
    """

    types: list[str] | None = None
    path_glob: str | None = None
    after: float | None = None
    before: float | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    place: str | None = None
    exclude: tuple[int, ...] | None = None
    model: str | None = None
    speaker: int | None = None

    def active(self) -> bool:
        return any(getattr(self, name) is not None for name in self.__slots__)


@dataclass(slots=True)
class HitSegment:
    """One matching moment or passage of a hit."""

    start: float | None
    end: float | None
    text: str | None
    score: float
    space: str
    kind: str
    loc: dict[str, Any] | None = None
    """Where it is beyond start/end: "page" (1-based) and/or "box" ([x, y, w, h] pixels)."""
    speaker: str | None = None
    """Who speaks in this moment (a speaker's name, or "speaker N"), when voices are known."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "score": round(self.score, 4),
            "space": self.space,
            "kind": self.kind,
        }
        if self.start is not None:
            out["start"] = self.start
            out["end"] = self.end
        if self.text is not None:
            out["text"] = self.text
        if self.speaker is not None:
            out["speaker"] = self.speaker
        for key in ("page", "box"):
            if self.loc and self.loc.get(key) is not None:
                out[key] = self.loc[key]
        return out

    def where(self, file_type: str) -> str:
        """The place in words for a person: "p. 3", "at (12, 40)", "12s-15s", "40-310"."""
        parts = []
        if self.loc and self.loc.get("page") is not None:
            parts.append(f"p. {self.loc['page']}")
        if self.start is not None and (file_type in ("audio", "video") or not parts):
            unit = "s" if file_type in ("audio", "video") else ""
            end = self.end if self.end is not None else self.start
            parts.append(f"{self.start:g}{unit}-{end:g}{unit}")
        if self.loc and self.loc.get("box") is not None:
            x, y, w, h = self.loc["box"]
            parts.append(f"box {x},{y} {w}x{h}")
        return " ".join(parts)


@dataclass(slots=True)
class Hit:
    """One file in a result list, with its best segments first."""

    path: str
    type: str
    score: float
    segments: list[HitSegment] = field(default_factory=list)
    reason: str = ""
    best_segment: int | None = field(default=None, repr=False, compare=False)
    raw_score: float = field(default=0.0, repr=False, compare=False)
    """The unclamped score that orders hits whose shown scores are equal."""
    file_id: int = field(default=0, repr=False, compare=False)
    date: float | None = field(default=None, compare=False)
    """When the file was made (EXIF date, else mtime), epoch seconds, when known."""
    nearest_example: str | None = field(default=None, compare=False)
    """For `recommend`: the liked example this hit is most like (its path)."""

    def to_json(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "type": self.type,
            "score": round(self.score, 4),
            "reason": self.reason,
            "segments": [s.to_json() for s in self.segments],
        }
        if self.date is not None:
            out["date"] = datetime.fromtimestamp(self.date).isoformat(timespec="seconds")
        if self.nearest_example is not None:
            out["nearest_example"] = self.nearest_example
        return out


class Hits(list[Hit]):
    """A page of hits, best first (a plain list to its users), and `cut`: how many hits of
    the page the adaptive cutoff left out (`--all` shows them); `reading`: how a text
    query was read (searchengine.understand.Reading), None for `similar`."""

    cut: int = 0
    reading: Reading | None = None
