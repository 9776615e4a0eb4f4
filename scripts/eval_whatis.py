"""The `manpages-whatis` set: queries written for a page but not taken from its title or name.

Run through scripts/eval_retrieval.py (`--sets manpages-whatis`). The docs-titles set asks
page titles, which are also in the file-name index, so it favours keywords. Here the query
is the description its authors wrote in a man page's NAME line (the `whatis` line: "cp -
copy files and directories" asks "copy files and directories"), and the page is indexed
with its NAME section cut out and under a neutral file name (0001.txt, in a seeded
shuffled order), so neither the page text nor the file-name index holds the query as
written: the words must be found scattered in the page, or the meaning matched.

Pages: Debian's `manpages` and `manpages-dev` as plain text (scripts/fetch_samples.py
manpages; `.so` stubs are already resolved away there). A page without a NAME line of the
form "names - description" is left out. Pages that share a description ("create a child
process": clone(2) and fork(2)) are all relevant to it.

`overlap` measures how many words a query shares with its target, on the text as indexed:
content words (stop words dropped) compared by their first five letters, a crude stem.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SET_NAME = "manpages-whatis"
MIN_WORDS = 2  # descriptions with fewer content words are not asked
LOW_OVERLAP = 0.5  # queries sharing at most this share of their words form the low slice
STEM = 5
STOP_WORDS = frozenset(
    "a an and are as at be by for from in into is it its of on or over than that the this "
    "to under via with within without".split()
)

_NAME = re.compile(r"\A\s*NAME[ \t]*\n(?P<body>.*?)(?:\n[ \t]*\n|\Z)", re.S)
_DASH = re.compile(r"\s+[-\u2010-\u2015]+\s+")


def whatis(text: str) -> tuple[str, str] | None:
    """(names, description) of a plain-text man page's NAME section, or None when the page
    has none of the form "name1, name2 - what they do"."""
    m = _NAME.match(text)
    if not m:
        return None
    line = " ".join(m.group("body").split())
    parts = _DASH.split(line, maxsplit=1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0].strip(), parts[1].strip().rstrip(".").strip()


def cut_name(text: str) -> str:
    """The page without its NAME section (heading and paragraph); unchanged without one."""
    m = _NAME.match(text)
    return text[m.end() :].lstrip("\n") if m else text


def content_words(text: str) -> list[str]:
    """Lower-case words of `text`, stop words dropped, cut to their first STEM letters."""
    words = re.findall(r"[^\W_]+", text.lower())
    return [w[:STEM] for w in words if w not in STOP_WORDS]


def overlap(query: str, target: str) -> float:
    """Share of the query's content words found anywhere in `target` (0..1)."""
    wanted = content_words(query)
    if not wanted:
        return 0.0
    have = set(content_words(target))
    return sum(w in have for w in wanted) / len(wanted)


@dataclass
class WhatisSet:
    """Pages to index (neutral key -> text without NAME) and queries (description, keys of
    the pages it describes), with each query's word overlap with its targets."""

    texts: dict[str, str]
    queries: list[tuple[str, frozenset[str]]]
    overlaps: dict[str, float]
    notes: list[str] = field(default_factory=list)
    name: str = SET_NAME

    def low_overlap(self, limit: float = LOW_OVERLAP) -> list[tuple[str, frozenset[str]]]:
        """The queries sharing at most `limit` of their words with their targets."""
        return [(q, rel) for q, rel in self.queries if self.overlaps[q] <= limit]


def read_pages(folder: Path) -> dict[str, str]:
    """Every plain-text man page under `folder`: "man2/open.2.txt" -> its text."""
    pages: dict[str, str] = {}
    for p in sorted(folder.rglob("*.txt")):
        if p.is_file() and re.fullmatch(r"man\w+", p.parent.name):
            pages.setdefault(f"{p.parent.name}/{p.name}", p.read_text("utf-8", "replace"))
    return pages


def build_whatis_set(
    pages: Mapping[str, str], n_corpus: int, n_queries: int, seed: int
) -> WhatisSet:
    """A seeded sample of `n_corpus` pages with a NAME line, under neutral shuffled names
    and without NAME, and `n_queries` distinct descriptions of them (seeded)."""
    rng = random.Random(seed)
    described = {k: w for k, t in sorted(pages.items()) if (w := whatis(t)) is not None}
    chosen = sorted(rng.sample(sorted(described), min(n_corpus, len(described))))
    rng.shuffle(chosen)
    width = max(4, len(str(len(chosen))))
    neutral = {page: f"{i:0{width}d}.txt" for i, page in enumerate(chosen, 1)}
    texts = {neutral[p]: cut_name(pages[p]) for p in chosen}
    by_desc: dict[str, set[str]] = {}
    asked_as: dict[str, str] = {}
    for page in sorted(chosen):
        desc = described[page][1]
        if len(content_words(desc)) >= MIN_WORDS:
            by_desc.setdefault(desc.casefold(), set()).add(neutral[page])
            asked_as.setdefault(desc.casefold(), desc)
    asked = sorted(rng.sample(sorted(by_desc), min(n_queries, len(by_desc))))
    queries = [(asked_as[d], frozenset(by_desc[d])) for d in asked]
    overlaps = {q: statistics.fmean(overlap(q, texts[key]) for key in rel) for q, rel in queries}
    shares = list(overlaps.values())
    verbatim = sum(
        any(q.casefold() in " ".join(texts[k].split()).casefold() for k in rel)
        for q, rel in queries
    )
    low = sum(v <= LOW_OVERLAP for v in shares)
    notes = [
        f"{len(texts)} of {len(pages)} man pages indexed ({len(described)} have a NAME line), "
        "NAME sections cut, neutral file names; "
        f"{len(queries)} distinct descriptions asked "
        f"({sum(len(r) > 1 for _, r in queries)} shared by two or more pages)",
        f"word overlap of query and target (content words, 5-letter stems, whole page as "
        f"indexed): mean {statistics.fmean(shares) if shares else 0:.2f}, median "
        f"{statistics.median(shares) if shares else 0:.2f}; {low} queries share at most "
        f"{LOW_OVERLAP:g} of their words; {verbatim} queries occur verbatim in the target",
    ]
    return WhatisSet(texts, queries, overlaps, notes)


def write_pages(texts: Mapping[str, str], dest: Path) -> dict[str, Path]:
    """dest/key for each text, rewritten only when it changed (so a re-run re-indexes
    nothing); returns key -> file."""
    out = {}
    for key, text in texts.items():
        target = dest / key
        if not target.is_file() or target.read_text("utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, "utf-8")
        out[key] = target
    return out
