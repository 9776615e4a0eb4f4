"""Places in a query ("in Lisbon", "from Portugal"), matched against the places of the
index's photos and videos (names from their GPS, see searchengine/geo.py).

A city is often also a word ("Nice weather", "Reading glasses", "Bath towels"), so a
phrase is a place only when the index holds files taken there, and then only when "in",
"at", "from", "near" or "around" comes before it. Without one ("notes about Lisbon") it is
no filter, which would hide every file without GPS: the words stay, and BM25 finds them in
the place names of the files taken there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from searchengine.understand.words import CONNECTORS, Claims, Word, fold, words

PLACE_WORDS = 6
"""Longest place name tried, in words ("Bath and North East Somerset")."""
BEFORE_PLACE = frozenset({"in", "at", "from", "near", "around"})

KnownPlaces = Callable[[Collection[str]], dict[str, str]]
"""Folded phrases -> the index's spelling of those that are places of indexed files."""


@dataclass(slots=True)
class PlaceMatch:
    name: str
    key: str
    start: int
    end: int
    introduced: bool
    """A preposition came before it: its words (with the preposition) leave the query."""


def candidates(text: str, claims: Claims) -> dict[str, tuple[int, int]]:
    """Phrases of up to PLACE_WORDS words that could be places: folded key -> first span."""
    tokens = [w for w in words(text) if claims.free(w.start, w.end)]
    out: dict[str, tuple[int, int]] = {}
    for i in range(len(tokens)):
        for j in range(i, min(i + PLACE_WORDS, len(tokens))):
            if not _contiguous(text, tokens[i : j + 1]):
                break
            first, last = tokens[i].lower, tokens[j].lower
            if first in CONNECTORS or last in CONNECTORS or tokens[j].text.isdigit():
                continue
            out.setdefault(fold(text[tokens[i].start : tokens[j].end]), (i, j))
    return out


def find_place(text: str, claims: Claims, known: KnownPlaces | None) -> PlaceMatch | None:
    """The query's place (the first, longest one), claimed; None without one."""
    if known is None:
        return None
    spans = candidates(text, claims)
    if not spans:
        return None
    names = known(list(spans))
    if not names:
        return None
    tokens = [w for w in words(text) if claims.free(w.start, w.end)]
    all_words = words(text)
    matches: list[PlaceMatch] = []
    for key, (i, j) in spans.items():
        if key not in names:
            continue
        first, last = tokens[i], tokens[j]
        before = _previous(all_words, first)
        introduced = before is not None and before.lower in BEFORE_PLACE
        if not introduced:  # "notes about Lisbon": words, found by the place names' BM25
            continue
        start = before.start if introduced and before is not None else first.start
        matches.append(PlaceMatch(names[key], key, start, last.end, introduced))
    if not matches:
        return None
    best = min(matches, key=lambda p: (not p.introduced, p.start, -(p.end - p.start)))
    if not claims.free(best.start, best.end):
        return None
    claims.take(best.start, best.end)
    return best


def _contiguous(text: str, tokens: list[Word]) -> bool:
    """Only spaces, hyphens or apostrophes between the words (no comma, no claimed date)."""
    return all(
        not text[a.end : b.start].strip(" -'’") for a, b in zip(tokens, tokens[1:], strict=False)
    )


def _previous(all_words: list[Word], word: Word) -> Word | None:
    """The word before `word`, skipping an article ("in the Algarve")."""
    i = next(n for n, w in enumerate(all_words) if w.start == word.start)
    j = i - 1
    if j >= 0 and all_words[j].lower == "the":
        j -= 1
    return all_words[j] if j >= 0 else None
