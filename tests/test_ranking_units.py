"""Small pure functions of ranking and storage: exact expectations."""

from __future__ import annotations

from searchengine.media.text import chunk_spans
from searchengine.search import glob_for, merge_moments, snippet
from searchengine.store.catalog import fts_query
from searchengine.types import HitSegment


def test_adjacent_strong_moments_merge_into_one_range():
    moments = [
        HitSegment(0.0, 3.0, None, 0.92, "clip", "frame"),
        HitSegment(3.0, 6.0, None, 0.93, "clip", "frame"),
        HitSegment(20.0, 23.0, None, 0.95, "clip", "frame"),
        HitSegment(40.0, 43.0, None, 0.30, "clip", "frame"),
        HitSegment(5.0, 15.0, None, 0.91, "clap", "sound"),
    ]
    out = merge_moments(moments, best=0.95)
    assert [(m.kind, m.start, m.end) for m in out] == [
        ("frame", 20.0, 23.0),
        ("frame", 0.0, 6.0),
        ("sound", 5.0, 15.0),
        ("frame", 40.0, 43.0),
    ]
    assert out[1].score == 0.93


def test_fts_query_is_safe_against_operators_and_quotes():
    assert (
        fts_query('budget "2023" AND NOT (tax*)') == '"budget" OR "2023" OR "and" OR "not" OR "tax"'
    )
    assert fts_query("!!! ---") is None


def test_path_glob_relative_patterns_match_anywhere():
    assert glob_for("*.md") == "*.md"
    assert glob_for("/home/me/*") == "/home/me/*"
    assert glob_for("notes/*.txt") == "*/notes/*.txt"
    assert glob_for(None) is None


def test_chunks_cover_text_with_overlap_and_exact_offsets():
    text = " ".join(f"w{i}" for i in range(2000))
    spans = chunk_spans(text, 500, 100)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (_, e1), (s2, _) in zip(spans[:-1], spans[1:], strict=True):
        assert s2 < e1  # overlapping
        assert e1 - s2 <= 150
        assert text[s2 - 1] == " "  # chunks start on a word boundary
    assert all(e - s <= 500 for s, e in spans)


def test_snippet_centres_on_the_query_word():
    text = "alpha " * 100 + "zebra crossing " + "omega " * 100
    out = snippet(text, "zebra")
    assert "zebra" in out and out.startswith("…") and len(out) < 260
