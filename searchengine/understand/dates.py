"""Dates and date ranges in a query: "2019", "last summer", "in March 2021", "yesterday".

A small grammar, not a general parser: years, months, seasons, ranges of years, relative
phrases ("last week", "3 years ago", "the past 10 days"), days in words ("3 March 2021",
"March 3rd") and words that open a range ("since", "before", "after", "until") are read
here with `re` and `datetime`, in well under a millisecond. Days in figures ("04/05/2021",
"5.6.21"), whose order depends on habit, are handed to dateparser, imported only then: its
import and first parse cost 0.3 to 0.4 s (docs/benchmarks.md), too much for every query of
a command whose whole cold start is about a second.

Every range is [start, end) in days of the local calendar. A bare year ("tax return 2019")
is not a filter: it may be a title, so it stays words (BM25 matches it in file names and
EXIF dates). A bare month or season name ("may", "march", "fall") is never a date; with
"in", "during", "last" and the like, or with a year, it is. Seasons are the northern
meteorological ones (summer: June to August); winter 2019 runs from December 2019.
"""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache

from searchengine.understand.words import Claims, word_before

MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
}  # fmt: skip
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
"""Season -> its first month (each lasts three)."""
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "a couple of": 2,
    "a few": 3, "few": 3, "several": 3,
}  # fmt: skip

_MONTH = r"(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_SEASON = r"(?:" + "|".join(SEASONS) + r")"
_YEAR = r"(?:19|20)\d\d"
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_NUM = r"(?:\d{1,3}|" + "|".join(sorted(NUMBERS, key=len, reverse=True)) + r")"
_UNIT = r"(?:day|week|month|year)s?"
_WEEKDAY = r"(?:" + "|".join(WEEKDAYS) + r")"

OPENERS = {"since", "after", "before", "until", "till"}
"""Words that make a one-sided range out of what follows them."""
PREPOSITIONS = {"in", "from", "during", "on", "of", "at", "between"} | OPENERS
"""Words that mark a following year or month name as a date, not a title or a verb."""
VERBS = {"taken", "shot", "recorded", "filmed", "made", "written"}


@dataclass(slots=True)
class DateRange:
    """What a date phrase means: [after, before) in local days (either open), the span of
    the query it covers (with its preposition), and whether it may be a filter at all."""

    start: int
    end: int
    after: date | None
    before: date | None
    ambiguous: bool = False
    introduced: bool = False
    """Preceded by a preposition ("from 2019", "in May"): clearly a date."""


def _compile(body: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w/.-])" + body + r"(?![\w/-]|\.\d)", re.IGNORECASE)


_UPTO = r"(?:and|to|until|till|through)"
_D = rf"(?P<d>{_DAY})"
_MON = rf"(?P<mon>{_MONTH})"
_Y = rf"(?P<y>{_YEAR})"
_LAST_N = rf"(?:last|past)\s+(?P<n>{_NUM})\s+(?P<unit>{_UNIT})"
_NAME = rf"(?P<name>{_SEASON}|{_MONTH}|{_WEEKDAY})"

TRIGGERS = frozenset(
    [*MONTHS, *SEASONS, *WEEKDAYS, "today", "tonight", "yesterday", "ago", "last", "this",
     "past", "previous"]
)  # fmt: skip
"""Words without which a query holds no date phrase (nor does one without a digit): the
patterns are compiled only for a query that has one (compiling them costs about 10 ms of a
cold command)."""


@cache
def patterns() -> list[tuple[str, re.Pattern[str]]]:
    return [
        # order matters: longer phrases first, so "March 3rd 2021" is not read as "March"
        ("year_span", _compile(rf"(?:between|from)\s+(?P<y1>{_YEAR})\s+{_UPTO}\s+(?P<y2>{_YEAR})")),
        ("year_span", _compile(rf"(?P<y1>{_YEAR})\s*(?:-|–|to|through)\s*(?P<y2>{_YEAR})")),
        ("iso_day", _compile(r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})")),
        ("day", _compile(r"\d{1,2}[/.]\d{1,2}[/.](?:\d{4}|\d{2})")),
        ("spelled_day", _compile(rf"(?:the\s+)?{_D}(?:\s+of)?\s+{_MON}(?:,?\s+{_Y})?")),
        ("spelled_day", _compile(rf"{_MON}\s+(?:the\s+)?{_D}(?:,?\s+{_Y})?")),
        ("iso_month", _compile(r"(?P<y>\d{4})-(?P<m>0[1-9]|1[0-2])")),
        ("month_year", _compile(rf"(?P<mon>{_MONTH})(?:\s+of)?,?\s+(?P<y>{_YEAR})")),
        ("season_year", _compile(rf"(?:the\s+)?(?P<season>{_SEASON})(?:\s+of)?\s+(?P<y>{_YEAR})")),
        ("ago", _compile(rf"(?P<n>{_NUM})\s+(?P<unit>{_UNIT})\s+ago")),
        ("past_n", _compile(rf"(?:(?:in|during|over|from)\s+)?the\s+{_LAST_N}")),
        ("past_n", _compile(rf"(?:last|past)\s+(?P<n>\d{{1,3}})\s+(?P<unit>{_UNIT})")),
        (
            "relative",
            _compile(r"(?P<which>last|this|past|previous)\s+(?P<unit>week|month|year|weekend)"),
        ),
        ("relative_named", _compile(rf"(?P<which>last|this)\s+{_NAME}")),
        ("day_word", _compile(r"today|tonight|yesterday|the\s+day\s+before\s+yesterday")),
        ("named", _compile(_NAME)),
        ("year", _compile(rf"(?P<y>{_YEAR})")),
    ]


def may_hold_dates(text: str) -> bool:
    return any(c.isdigit() for c in text) or not TRIGGERS.isdisjoint(
        re.findall(r"[^\W\d_]+", text.lower())
    )


def find_dates(text: str, now: datetime, claims: Claims) -> list[DateRange]:
    """Every date phrase of `text`, claimed in `claims` when it is read as one."""
    today = now.date()
    found: list[DateRange] = []
    if not may_hold_dates(text):
        return found
    for kind, pattern in patterns():
        for m in pattern.finditer(text):
            if not claims.free(m.start(), m.end()):
                continue
            span = _meaning(kind, m, today)
            if span is None:
                continue
            start, opener, introduced = _introduction(text, m.start())
            if kind == "named" and (not introduced or _word_at(text, start) in ("of", "at")):
                continue  # "may", "march", "fall" alone are words; "photos of May" a name
            if kind in ("day", "iso_day") and not introduced:
                continue  # "changelog 3.11.12", "notes 2021-03-15": a version or a name
            if kind == "named" and m.group("name").lower() in WEEKDAYS:
                continue  # "the meeting on Tuesday" says no week: words ("last Tuesday" is one)
            after, before = span
            if opener in ("since",):
                before = None
            elif opener == "after":
                after, before = before, None
            elif opener == "before":
                after, before = None, after
            elif opener in ("until", "till"):
                after = None
            found.append(
                DateRange(
                    start=start,
                    end=m.end(),
                    after=after,
                    before=before,
                    ambiguous=kind == "year" and not introduced,
                    introduced=introduced or kind in ("year_span",),
                )
            )
            claims.take(start, m.end())
    return sorted(found, key=lambda d: d.start)


def _word_at(text: str, start: int) -> str:
    m = re.match(r"[^\W_]+", text[start:])
    return m.group().lower() if m else ""


def _introduction(text: str, start: int) -> tuple[int, str | None, bool]:
    """Where a date phrase begins once the preposition (and verb) before it are included,
    the opener word if any ("since"), and whether a preposition introduced it."""
    prev = word_before(text, start)
    if prev is None or prev.lower not in PREPOSITIONS:
        return start, None, False
    begin = prev.start
    opener = prev.lower if prev.lower in OPENERS else None
    verb = word_before(text, begin)
    if verb is not None and verb.lower in VERBS:
        begin = verb.start
    return begin, opener, True


def _meaning(kind: str, m: re.Match[str], today: date) -> tuple[date, date] | None:
    """[start, end) of a matched phrase; None when it is not a real date."""
    g = m.groupdict()
    try:
        if kind == "year_span":
            y1, y2 = sorted((int(g["y1"]), int(g["y2"])))
            return date(y1, 1, 1), date(y2 + 1, 1, 1)
        if kind == "year":
            return date(int(g["y"]), 1, 1), date(int(g["y"]) + 1, 1, 1)
        if kind == "iso_day":
            day = date(int(g["y"]), int(g["m"]), int(g["d"]))
            return day, day + timedelta(days=1)
        if kind == "iso_month":
            return _month(int(g["y"]), int(g["m"]))
        if kind == "spelled_day":
            day = _spelled_day(int(re.match(r"\d+", g["d"]).group()), g["mon"], g["y"], today)
            return day, day + timedelta(days=1)
        if kind == "day":
            day = _parse_day(m.group(), today)
            return (day, day + timedelta(days=1)) if day else None
        if kind == "month_year":
            return _month(int(g["y"]), _month_number(g["mon"]))
        if kind == "season_year":
            return _season(int(g["y"]), SEASONS[g["season"].lower()])
        if kind == "ago":
            return _ago(_count(g["n"]), g["unit"].lower().rstrip("s"), today)
        if kind == "past_n":
            n, unit = _count(g["n"]), g["unit"].lower().rstrip("s")
            return _shift(today, unit, -n), today + timedelta(days=1)
        if kind == "relative":
            return _relative(g["which"].lower(), g["unit"].lower(), today)
        if kind == "relative_named":
            return _named(g["name"].lower().rstrip("."), today, g["which"].lower())
        if kind == "day_word":
            word = " ".join(m.group().lower().split())
            back = {"today": 0, "tonight": 0, "yesterday": 1}.get(word, 2)
            day = today - timedelta(days=back)
            return day, day + timedelta(days=1)
        if kind == "named":
            return _named(g["name"].lower().rstrip("."), today, "in")
    except (ValueError, OverflowError):
        return None  # "2021-02-30", "31st of February"
    raise AssertionError(kind)


def _month_number(name: str) -> int:
    return MONTHS[name.lower().rstrip(".")]


def _month(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, 1) + timedelta(days=monthrange(year, month)[1])


def _season(year: int, first_month: int) -> tuple[date, date]:
    start = date(year, first_month, 1)
    end_month = first_month + 3
    return start, date(year + (end_month > 12), (end_month - 1) % 12 + 1, 1)


def _count(word: str) -> int:
    word = " ".join(word.lower().split())
    return int(word) if word.isdigit() else NUMBERS[word]


def _shift(day: date, unit: str, n: int) -> date:
    """`day` moved by n days, weeks, months or years (month ends clamped)."""
    if unit == "day":
        return day + timedelta(days=n)
    if unit == "week":
        return day + timedelta(weeks=n)
    months = n * (12 if unit == "year" else 1)
    y, m = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(y, m + 1, min(day.day, monthrange(y, m + 1)[1]))


def _unit_around(day: date, unit: str) -> tuple[date, date]:
    """The calendar day, week (from Monday), month or year holding `day`."""
    if unit == "day":
        return day, day + timedelta(days=1)
    if unit == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(weeks=1)
    if unit == "month":
        return _month(day.year, day.month)
    return date(day.year, 1, 1), date(day.year + 1, 1, 1)


def _ago(n: int, unit: str, today: date) -> tuple[date, date]:
    return _unit_around(_shift(today, unit, -n), unit)


def _relative(which: str, unit: str, today: date) -> tuple[date, date]:
    if unit == "weekend":  # this week's (Monday to Sunday), or the one before it
        saturday = today - timedelta(days=today.weekday()) + timedelta(days=5)
        if which != "this":
            saturday -= timedelta(weeks=1)
        return saturday, saturday + timedelta(days=2)
    if which == "past":  # "the past week": rolling, up to today
        return _shift(today, unit, -1), today + timedelta(days=1)
    here = _unit_around(today, unit)
    return here if which == "this" else _unit_around(_shift(today, unit, -1), unit)


def _named(name: str, today: date, which: str) -> tuple[date, date]:
    """A month, season or weekday without a year: the latest one that has begun ("in May",
    "in summer"); "last" skips the one we are in, "this" is the one of this year (week)."""
    if name in WEEKDAYS:
        target = WEEKDAYS.index(name)
        if which == "this":
            day = today - timedelta(days=today.weekday()) + timedelta(days=target)
        else:
            back = (today.weekday() - target) % 7
            day = today - timedelta(days=back or (7 if which == "last" else 0))
        return day, day + timedelta(days=1)
    if name in SEASONS:
        first = SEASONS[name]

        def span(year: int) -> tuple[date, date]:
            return _season(year, first)
    else:
        first = _month_number(name)

        def span(year: int) -> tuple[date, date]:
            return _month(year, first)

    year = today.year
    if span(year)[0] > today:
        year -= 1  # it has not begun this year: the latest one is last year's
    start, end = span(year)
    current = start <= today < end
    if which == "this":
        return span(today.year) if not current else (start, end)
    if which == "last" and current:
        return span(year - 1)
    return start, end


def _spelled_day(day: int, month: str, year: str | None, today: date) -> date:
    """ "3 March 2021", "March 3rd": without a year, the latest such day up to today.
    ValueError for a day the month does not have."""
    number = _month_number(month)
    if year:
        return date(int(year), number, day)
    found = date(today.year, number, day) if day <= monthrange(today.year, number)[1] else None
    if found is None or found > today:
        for back in range(1, 9):  # 29 February: the latest leap year
            try:
                return date(today.year - back, number, day)
            except ValueError:
                continue
        raise ValueError(f"no {month} {day}")
    return found


def _parse_day(phrase: str, today: date) -> date | None:
    """A day in figures ("04/05/2021", "5.6.21"), read by dateparser (lazily: see the module
    docstring), in its English order (month first when ambiguous); a day without a year is
    the latest such day up to today."""
    import dateparser

    settings = {
        "RELATIVE_BASE": datetime(today.year, today.month, today.day),
        "PREFER_DATES_FROM": "past",
        "REQUIRE_PARTS": ["day", "month"],
        "RETURN_TIME_AS_PERIOD": False,
    }
    found = dateparser.parse(phrase, languages=["en"], settings=settings)
    return found.date() if found is not None else None
