"""Kinds of file ("photos", "videos", "recordings", "pdf", "documents") and durations
("short", "longer than a minute") in a query.

A kind word becomes a type filter and leaves the words to embed ("beach photos" looks for
"beach" among images). "short" and "long" are durations only beside a kind that has one
(audio or video): "a short story" stays words. A spelled-out duration ("longer than a
minute", "under 10 s") is one whatever the rest of the query says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from searchengine.understand.words import Claims

KINDS: dict[str, tuple[str, ...]] = {
    "image": ("photo", "photos", "photograph", "photographs", "picture", "pictures", "pic",
              "pics", "image", "images", "selfie", "selfies", "screenshot", "screenshots"),
    "video": ("video", "videos", "clip", "clips", "movie", "movies", "footage"),
    "audio": ("recording", "recordings", "sound", "sounds", "audio", "song", "songs",
              "music", "podcast", "podcasts", "voice memo", "voice memos", "voice note",
              "voice notes"),
    "text": ("document", "documents", "doc", "docs", "pdf", "pdfs", "text file",
             "text files"),
}  # fmt: skip
PDF_GLOB = "*.[pP][dD][fF]"
"""What "pdf" asks of paths (SQLite GLOB is case-sensitive)."""

SHORT_S = 30.0
"""At most this long for "short" audio or video."""
LONG_S = 300.0
"""At least this long for "long" audio or video."""

_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
          "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600,
          "hour": 3600, "hours": 3600}  # fmt: skip
_AMOUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10,
            "fifteen": 15, "twenty": 20, "thirty": 30, "half a": 0.5, "half an": 0.5}  # fmt: skip
_AMOUNT = (
    r"(?P<n>\d+(?:\.\d+)?|"
    + "|".join(sorted(_AMOUNTS, key=len, reverse=True)).replace(" ", r"\s+")
    + r")"
)
_UNIT = r"(?P<unit>" + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")"
_MORE = r"(?P<more>(?:longer|more)\s+than|over|at\s+least|above)"
_LESS = r"(?P<less>(?:shorter|less)\s+than|under|at\s+most|up\s+to|below)"
_MORE_WORDS = {"longer", "more", "over", "least", "above"}
_LESS_WORDS = {"shorter", "less", "under", "most", "up", "below"}
_ADJECTIVES = {"short", "shorter", "brief", "quick", "long", "longer", "lengthy"}
_KIND_WORDS = sorted(((w, t) for t, ws in KINDS.items() for w in ws), key=lambda wt: -len(wt[0]))
TRIGGERS = frozenset(
    {w.split()[0] for w, _ in _KIND_WORDS} | _MORE_WORDS | _LESS_WORDS | _ADJECTIVES
)
"""Words without which a query names no kind or length: the patterns below are compiled
only for a query that has one."""


@cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(kind words, spelled-out lengths, length adjectives)."""
    kind = re.compile(
        r"(?<!\w)(?P<word>"
        + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w, _ in _KIND_WORDS)
        + r")(?!\w)",
        re.IGNORECASE,
    )
    spelled = re.compile(
        rf"(?<!\w)(?:{_MORE}|{_LESS})\s+{_AMOUNT}\s*-?\s*{_UNIT}(?:\s+long)?(?!\w)",
        re.IGNORECASE,
    )
    adjective = re.compile(
        r"(?<!\w)(?P<word>" + "|".join(sorted(_ADJECTIVES, key=len, reverse=True)) + r")(?!\w)",
        re.IGNORECASE,
    )
    return kind, spelled, adjective


_TYPE_OF = {w: t for w, t in _KIND_WORDS}


@dataclass(slots=True)
class Kinds:
    """What the query asks of files' kind and length, and the spans saying so."""

    types: list[str]
    path: str | None
    min_duration: float | None
    max_duration: float | None
    spans: list[tuple[int, int]]


def find_kinds(text: str, claims: Claims) -> Kinds:
    out = Kinds([], None, None, None, [])
    if TRIGGERS.isdisjoint(re.findall(r"[^\W\d_]+", text.lower())):
        return out
    kind_re, spelled_re, adjective_re = _patterns()
    words: list[str] = []
    for m in kind_re.finditer(text):
        if not claims.free(m.start(), m.end()):
            continue
        word = " ".join(m.group("word").lower().split())
        words.append(word)
        kind = _TYPE_OF[word]
        if kind not in out.types:
            out.types.append(kind)
        claims.take(m.start(), m.end())
        out.spans.append((m.start(), m.end()))
    if words and all(w.startswith("pdf") for w in words):
        out.path = PDF_GLOB
    for m in spelled_re.finditer(text):
        if not claims.free(m.start(), m.end()):
            continue
        amount = m.group("n").lower()
        seconds = (
            float(_AMOUNTS[" ".join(amount.split())] if amount[0].isalpha() else amount)
            * _UNITS[m.group("unit").lower()]
        )
        if m.group("more"):
            out.min_duration = seconds
        else:
            out.max_duration = seconds
        claims.take(m.start(), m.end())
        out.spans.append((m.start(), m.end()))
    timed = {"audio", "video"} & set(out.types)
    for m in adjective_re.finditer(text):
        if not timed or not claims.free(m.start(), m.end()):
            continue
        if m.group("word").lower() in ("long", "longer", "lengthy"):
            out.min_duration = out.min_duration if out.min_duration is not None else LONG_S
        else:
            out.max_duration = out.max_duration if out.max_duration is not None else SHORT_S
        claims.take(m.start(), m.end())
        out.spans.append((m.start(), m.end()))
    return out
