"""Words of a query with their positions, and the spans other parts of the parser claim.

Every recogniser works on the query as typed (case kept, offsets into it), so what is left
for the embedding is the typed text with the recognised spans cut out, never a re-spelling.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")

CONNECTORS = frozenset(
    "a an the of from in at on during with about near around by for to and or some any all "
    "taken shot recorded filmed made written".split()
)
"""Words that only join a recognised phrase to the rest; trimmed from the edges of what is
left once dates, kinds and places are cut out ("the pdf about my tax return" -> "my tax
return")."""


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()


def words(text: str) -> list[Word]:
    return [Word(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def fold(text: str) -> str:
    """Lower case without accents, words joined by one space: how place names are compared
    ("São Paulo" and "sao paulo" are one key)."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return " ".join(re.findall(r"[^\W_]+", plain.casefold()))


class Claims:
    """Character spans of the query already recognised, so no two recognisers take the same
    words."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []

    def free(self, start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in self.spans)

    def take(self, start: int, end: int) -> None:
        self.spans.append((start, end))


def word_before(text: str, start: int) -> Word | None:
    """The word just before offset `start` (only spaces between), or None."""
    m = re.search(r"([^\W_]+)\s+$", text[:start])
    return Word(m.group(1), m.start(1), m.end(1)) if m else None


def remainder(text: str, cut: list[tuple[int, int]]) -> str:
    """The query with the cut spans removed, connector words trimmed from the edges of
    each remaining piece, and spaces tidied."""
    pieces: list[str] = []
    pos = 0
    for start, end in sorted(cut):
        pieces.append(text[pos:start])
        pos = max(pos, end)
    pieces.append(text[pos:])
    kept = [_trim(p) for p in pieces]
    return " ".join(p for p in kept if p)


def _trim(piece: str) -> str:
    tokens = piece.split()
    while tokens and _bare(tokens[0]) in CONNECTORS:
        tokens.pop(0)
    while tokens and _bare(tokens[-1]) in CONNECTORS:
        tokens.pop()
    return " ".join(tokens).strip(" ,;:-")


def _bare(token: str) -> str:
    return token.strip(".,;:!?\"'()[]").lower()
