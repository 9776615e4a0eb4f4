"""Query understanding, case by case: what a plain query is read as, with "now" fixed so
relative dates are deterministic, and the places an index knows given as a table."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date, datetime

import pytest

from searchengine.understand import fold, read_query
from searchengine.understand.kinds import PDF_GLOB, SHORT_S
from tests.conftest import REPO

NOW = datetime(2025, 10, 15, 12, 0)  # a Wednesday in autumn
KNOWN = ["Lisbon", "Portugal", "Nice", "Reading", "Bath", "São Paulo", "New York City"]


def known(keys):
    table = {fold(name): name for name in KNOWN}
    return {k: table[k] for k in keys if k in table}


def nothing(keys):
    return {}


D = date
FILTERS = ("types", "after", "before", "min_duration", "max_duration", "place", "path")


def case(query: str, text: str, **want: object) -> tuple[str, str, dict[str, object]]:
    """A query, the words it leaves to embed, and the filters it is read as (the rest None);
    the index knows the places in KNOWN."""
    return query, text, {name: want.get(name) for name in FILTERS}


IMAGE, VIDEO, AUDIO, TEXT = ["image"], ["video"], ["audio"], ["text"]
CASES = [
    # dates and ranges
    case("beach photos from last summer", "beach", types=IMAGE, after=D(2025, 6, 1),
         before=D(2025, 9, 1)),
    case("photos in March 2021", "photos in March 2021", types=IMAGE, after=D(2021, 3, 1),
         before=D(2021, 4, 1)),
    case("in March 2021", "in March 2021", after=D(2021, 3, 1), before=D(2021, 4, 1)),
    case("notes from yesterday", "notes", after=D(2025, 10, 14), before=D(2025, 10, 15)),
    case("rain today", "rain", after=D(2025, 10, 15), before=D(2025, 10, 16)),
    case("videos from last week", "videos from last week", types=VIDEO, after=D(2025, 10, 6),
         before=D(2025, 10, 13)),
    case("dogs this month", "dogs", after=D(2025, 10, 1), before=D(2025, 11, 1)),
    case("receipts from last year", "receipts", after=D(2024, 1, 1), before=D(2025, 1, 1)),
    case("songs from 2 years ago", "songs from 2 years ago", types=AUDIO, after=D(2023, 1, 1),
         before=D(2024, 1, 1)),
    case("snow in the past 10 days", "snow", after=D(2025, 10, 5), before=D(2025, 10, 16)),
    case("party last weekend", "party", after=D(2025, 10, 11), before=D(2025, 10, 13)),
    case("photos between 2018 and 2020", "photos between 2018 and 2020", types=IMAGE,
         after=D(2018, 1, 1), before=D(2021, 1, 1)),
    case("hikes 2016-2017", "hikes", after=D(2016, 1, 1), before=D(2018, 1, 1)),
    case("documents since 2020", "documents since 2020", types=TEXT, after=D(2020, 1, 1)),
    case("letters before 2019", "letters", before=D(2019, 1, 1)),
    case("letters after 2019", "letters", after=D(2020, 1, 1)),
    case("winter 2019 photos", "winter 2019 photos", types=IMAGE, after=D(2019, 12, 1),
         before=D(2020, 3, 1)),
    case("kids in the summer of 2018", "kids", after=D(2018, 6, 1), before=D(2018, 9, 1)),
    case("photos from May", "photos from May", types=IMAGE, after=D(2025, 5, 1),
         before=D(2025, 6, 1)),
    case("skiing in December", "skiing", after=D(2024, 12, 1), before=D(2025, 1, 1)),
    case("invoice from 2021-03-04", "invoice", after=D(2021, 3, 4), before=D(2021, 3, 5)),
    case("photos taken on 3 March 2021", "photos taken on 3 March 2021", types=IMAGE,
         after=D(2021, 3, 3), before=D(2021, 3, 4)),
    case("cake on March 3rd, 2021", "cake", after=D(2021, 3, 3), before=D(2021, 3, 4)),
    case("party on the 5th of June", "party", after=D(2025, 6, 5), before=D(2025, 6, 6)),
    case("scan from 04/05/2021", "scan", after=D(2021, 4, 5), before=D(2021, 4, 6)),
    # kinds and lengths
    case("short sounds of rain", "rain", types=AUDIO, max_duration=SHORT_S),
    case("videos longer than a minute", "videos longer than a minute", types=VIDEO,
         min_duration=60.0),
    case("recordings under 10 seconds of birds", "birds", types=AUDIO, max_duration=10.0),
    case("long videos of the sea", "sea", types=VIDEO, min_duration=300.0),
    case("the pdf about my tax return", "my tax return", types=TEXT, path=PDF_GLOB),
    case("photos and videos of the kids", "kids", types=["image", "video"]),
    # places (known to the index)
    case("photos from 2019 in Lisbon", "photos from 2019 in Lisbon", types=IMAGE,
         after=D(2019, 1, 1), before=D(2020, 1, 1), place="Lisbon"),
    case("the video of the kids in Lisbon", "kids", types=VIDEO, place="Lisbon"),
    case("sunset in nice", "sunset", place="Nice"),
    case("street food in sao paulo", "street food", place="São Paulo"),
    case("taxis in New York City", "taxis", place="New York City"),
]  # fmt: skip

# the words stay words: no filter at all, the query embedded as typed
NEGATIVE = [
    ("2019", known, True),  # a track or file titled 2019
    ("Yesterday", known, True),  # a song
    ("last summer", known, True),
    ("Lisbon", known, False),  # found by BM25 in the place names instead
    ("trip to Portugal", known, False),  # a place without in/at/from may be a subject
    ("notes about Lisbon", known, False),  # the note must not be filtered out
    ("The Nice Guys", known, False),
    ("tax return 2019", known, True),
    ("things that may break", known, False),  # "may" is a verb
    ("budget meeting on Tuesday", known, False),  # which Tuesday is not said: spoken words
    ("notes from Monday", known, False),
    ("march of the penguins", known, False),
    ("leaves in the fall", known, False),
    ("a short story about a dog", known, False),  # "short" without audio or video
    ("Nice weather", known, False),  # cities that are also words, known to the index
    ("Reading glasses", known, False),
    ("Bath towels", known, False),
    ("Nice weather", nothing, False),
    ("sunset in Nice", nothing, False),  # no file was taken in Nice: words
    ("meeting notes", known, False),
    ("changelog 3.11.12", known, False),  # a version, not the 12th of March 2011
    ("meeting notes 2021-03-15", known, False),  # a day without "on"/"from": a name
    ("photos of May and her dog", known, None),  # May is a name here: only the kind is read
]


@pytest.mark.parametrize("query, text, want", CASES, ids=[c[0] for c in CASES])
def test_reading(query, text, want):
    reading = read_query(query, NOW, known)
    assert reading.text == text
    assert {name: getattr(reading.filters, name) for name in FILTERS} == want
    assert reading.changed()


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda c: f"{c[0]} ({c[1].__name__})")
def test_words_that_stay_words(case):
    query, places, noted = case
    reading = read_query(query, NOW, places)
    if noted is None:  # only the kind is a filter; the name stays in the text
        assert reading.filters.types == ["image"] and reading.filters.after is None
        assert "May" in reading.text
        return
    assert reading.text == query
    assert not reading.filters.any()
    assert bool(reading.notes) == noted


def test_relative_dates_follow_now():
    july = datetime(2025, 7, 10)
    summer = read_query("photos from last summer", july, None).filters
    assert (summer.after, summer.before) == (D(2024, 6, 1), D(2024, 9, 1))  # this one is not over
    this = read_query("photos from this summer", july, None).filters
    assert (this.after, this.before) == (D(2025, 6, 1), D(2025, 9, 1))
    may = read_query("photos from last May", datetime(2025, 5, 20), None).filters
    assert (may.after, may.before) == (D(2024, 5, 1), D(2024, 6, 1))
    friday = read_query("notes from last friday", NOW, None).filters
    assert (friday.after, friday.before) == (D(2025, 10, 10), D(2025, 10, 11))
    leap = read_query("photos from a year ago", datetime(2024, 2, 29), None).filters
    assert (leap.after, leap.before) == (D(2023, 1, 1), D(2024, 1, 1))
    feb29 = read_query("cake on February 29th", NOW, None).filters
    assert (feb29.after, feb29.before) == (D(2024, 2, 29), D(2024, 3, 1))
    later = read_query("party on the 20th of October", NOW, None).filters  # not yet this year
    assert later.after == D(2024, 10, 20)


def test_impossible_days_are_not_dates():
    iso = read_query("notes 2021-02-30", NOW, None)
    assert iso.filters.after is None and iso.filters.before is None
    spelled = read_query("cake on 31st of February 2021", NOW, None).filters
    assert (spelled.after, spelled.before) == (D(2021, 2, 1), D(2021, 3, 1))  # the month only


def test_reading_is_shown_in_one_line():
    reading = read_query("beach photos from last summer in Lisbon", NOW, known)
    assert reading.describe() == (
        '"beach" type=image after=2025-06-01 before=2025-09-01 place=Lisbon'
    )
    assert reading.to_json()["filters"] == {
        "type": ["image"],
        "after": "2025-06-01",
        "before": "2025-09-01",
        "place": "Lisbon",
    }


def test_place_names_fold_case_and_accents():
    assert fold("São Paulo") == fold("sao  PAULO") == "sao paulo"
    assert fold("Provence-Alpes-Côte d'Azur") == "provence alpes cote d azur"


def test_parsing_is_fast_and_light():
    """The grammar costs well under a millisecond a query; dateparser is imported only for
    a day in figures."""
    queries = [q for q, _, want in CASES if "/" not in q] * 20
    start = time.perf_counter()
    for q in queries:
        read_query(q, NOW, known)
    per_query_ms = (time.perf_counter() - start) * 1000 / len(queries)
    assert per_query_ms < 2.0
    probe = (
        "import sys; from searchengine.understand import read_query; "
        "read_query(sys.argv[1], None, lambda k: {}); print('dateparser' in sys.modules)"
    )
    for query, loaded in (
        ("beach photos from last summer in Lisbon", "False"),
        ("photos taken on 3 March 2021", "False"),
        ("scans from 04/05/2021", "True"),  # figures: dateparser knows the orders
    ):
        res = subprocess.run(
            [sys.executable, "-c", probe, query],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == loaded, query


def test_a_date_flag_replaces_the_range_read_from_the_words():
    from searchengine.understand import Wanted

    reading = read_query("photos from 2019", NOW, known)
    flags = reading.with_flags(Wanted(after=D(2020, 1, 1))).filters
    assert (flags.after, flags.before, flags.types) == (D(2020, 1, 1), None, ["image"])


def test_a_long_pasted_text_is_searched_as_words():
    query = "notes from last summer in Lisbon " * 40
    reading = read_query(query, NOW, known)
    assert reading.text == query and reading.filters.after is None
    assert reading.notes and "searched as words" in reading.notes[0]
