"""How a plain query was read: the words to embed, the filters recognised, and notes.

`read_query("beach photos from last summer", now)` gives text "beach", type image, and
the dates of last summer. Parsing never leaves nothing to search: when nothing but a date,
a place or a length was recognised ("2019", "Yesterday", "Lisbon") the query is read as
words, without filters, since it may be a title; with a kind ("photos from 2019") the
filters stand and the whole query is embedded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from typing import Any

from searchengine.understand.dates import find_dates
from searchengine.understand.kinds import find_kinds
from searchengine.understand.places import KnownPlaces, find_place
from searchengine.understand.words import Claims, remainder


@dataclass(slots=True)
class Wanted:
    """Filters in a user's terms (days, seconds, a place's name), before they become the
    store's `Filters`. None: not asked. Dates read from words are days; a flag's date is
    kept as given (text, a datetime or epoch seconds)."""

    types: list[str] | None = None
    path: str | None = None
    after: date | str | float | None = None
    before: date | str | float | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    place: str | None = None

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def over(self, given: Wanted) -> Wanted:
        """These values where `given` (explicit flags) has none: flags always win. A date
        range is one value: `--after` alone replaces the words' whole range, so the two
        never mix into an empty one."""
        merged = Wanted(
            **{
                f.name: getattr(given, f.name)
                if getattr(given, f.name) is not None
                else getattr(self, f.name)
                for f in fields(self)
            }
        )
        if given.after is not None or given.before is not None:
            merged.after, merged.before = given.after, given.before
        return merged

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out["type" if f.name == "types" else f.name] = (
                value.isoformat() if isinstance(value, date) else value
            )
        return out


@dataclass(slots=True)
class Reading:
    """A query as read: `text` is embedded and matched by words, `filters` restrict
    retrieval, `notes` say what was left as words and why."""

    query: str
    text: str
    filters: Wanted = field(default_factory=Wanted)
    notes: list[str] = field(default_factory=list)
    literal: bool = False
    understood: bool = False
    """The words gave filters (flags may have added others since)."""

    def changed(self) -> bool:
        """Whether there is anything to tell: filters read from the words, or notes."""
        return self.understood or self.text != self.query or bool(self.notes)

    def describe(self) -> str:
        """One line: `"beach" type=image after=2025-06-01 before=2025-09-01`."""
        parts = [json.dumps(self.text, ensure_ascii=False)]
        for name, value in self.filters.to_json().items():
            if isinstance(value, list):
                value = ",".join(value)
            elif isinstance(value, float):
                value = f"{value:g}"
            parts.append(f"{name}={value}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "text": self.text,
            "filters": self.filters.to_json(),
            "notes": list(self.notes),
            "literal": self.literal,
        }

    def with_flags(self, given: Wanted) -> Reading:
        """The reading with explicit flags over what the words said."""
        return replace(self, filters=self.filters.over(given), notes=list(self.notes))


MAX_READ_CHARS = 500
"""Longer queries are not read for dates and places (the reading's cost grows with length)."""


def literal(query: str) -> Reading:
    return Reading(query=query, text=query, literal=True)


def read_query(
    query: str, now: datetime | None = None, known_places: KnownPlaces | None = None
) -> Reading:
    """Read dates, kinds, lengths and places out of a query (see the module docstring).
    `now` fixes what "yesterday" means; `known_places` says which phrases are places of
    indexed files (without it, no place is recognised)."""
    now = now or datetime.now()
    if len(query) > MAX_READ_CHARS:  # a pasted text, not a question: read as words
        reading = literal(query)
        reading.notes.append(f"a query over {MAX_READ_CHARS} characters is searched as words")
        return reading
    claims = Claims()
    cut: list[tuple[int, int]] = []
    notes: list[str] = []
    wanted = Wanted()
    strong = False  # something that is clearly a filter, not a title
    for found in find_dates(query, now, claims):
        if found.ambiguous:
            phrase = query[found.start : found.end]
            notes.append(
                f"'{phrase}' searched as words; say 'from {phrase}' to keep only files "
                f"dated {phrase}"
            )
            continue
        _combine(wanted, found.after, found.before)
        cut.append((found.start, found.end))
        strong |= found.introduced
    kinds = find_kinds(query, claims)
    if kinds.types:
        wanted.types = kinds.types
        strong = True
    wanted.path = kinds.path
    wanted.min_duration, wanted.max_duration = kinds.min_duration, kinds.max_duration
    cut += kinds.spans
    place = find_place(query, claims, known_places)
    if place is not None:
        wanted.place = place.name
        strong |= place.introduced
        if place.introduced:
            cut.append((place.start, place.end))
    if not cut and place is None:
        return Reading(query=query, text=query, notes=notes)
    text = remainder(query, cut) if cut else query
    if not text and not strong:
        return Reading(
            query=query,
            text=query,
            notes=notes
            + [
                "read as words, not as a filter (it may be a title): add what you look "
                "for ('photos from 2019') or use --after/--before, --type, --place"
            ],
        )
    return Reading(
        query=query, text=text or query, filters=wanted, notes=notes, understood=wanted.any()
    )


def _combine(wanted: Wanted, after: date | None, before: date | None) -> None:
    """A second date phrase: "since 2019 ... before 2021" closes the range; two ranges
    ("in 2019 and in 2021") are covered by one."""
    if wanted.after is None and wanted.before is None:
        wanted.after, wanted.before = after, before
    elif after is None or before is None or wanted.after is None or wanted.before is None:
        wanted.after = wanted.after or after
        wanted.before = wanted.before or before
    else:
        wanted.after, wanted.before = min(wanted.after, after), max(wanted.before, before)
