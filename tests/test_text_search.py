"""Text documents end to end through the Python API: index, search, filters, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchengine import Engine, UserError
from tests.conftest import run_cli


@pytest.fixture
def engine(corpus: Path, index_dir: Path):
    with Engine(index_dir, create=True) as eng:
        summary = eng.index([corpus])
        assert summary.added == 6 and summary.failed == 0
        yield eng


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("cutting travel expenses", "budget.txt"),
        ("growing vegetables", "garden.md"),
        ("how to make breakfast batter", "recipe.html"),
        ("moons of the biggest planet", "astronomy.rst"),
        ("postgres refused the connection", "server.log"),
        ("recursive number sequence function", "code.py"),
    ],
)
def test_semantic_query_finds_the_right_document(engine: Engine, query: str, expected: str):
    hits = engine.search(query, k=3)
    assert Path(hits[0].path).name == expected
    assert hits[0].score > hits[1].score


def test_hits_carry_char_offsets_and_snippets(engine: Engine, corpus: Path):
    hit = engine.search("Galileo discovered moons", k=1)[0]
    seg = hit.segments[0]
    body = (corpus / "astronomy.rst").read_text()
    assert body[int(seg.start) : int(seg.end)].startswith("Jupiter")
    assert "Galileo" in seg.text
    assert 0 < hit.score <= 1


def test_html_is_stripped_of_markup_and_scripts(engine: Engine):
    hit = engine.search("pancakes batter", k=1)[0]
    assert hit.path.endswith("recipe.html")
    text = " ".join(s.text for s in hit.segments)
    assert "<p>" not in text and "var x" not in text and "Whisk flour" in text


def test_k_type_and_path_filters(engine: Engine):
    assert len(engine.search("anything at all", k=2)) == 2
    assert len(engine.search("anything at all", k=50)) == 6
    only_md = engine.search("planet", k=10, path="*.md")
    assert [Path(h.path).name for h in only_md] == ["garden.md"]
    assert engine.search("planet", k=10, types=["image"]) == []
    assert all(h.type == "text" for h in engine.search("planet", k=10, types=["text"]))
    with pytest.raises(UserError):
        engine.search("planet", types=["sculpture"])


def test_keyword_match_outranks_weak_semantic_match(tmp_path: Path, index_dir: Path):
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "a.txt").write_text("Invoice XK-4471 was paid on time by the customer.")
    (docs / "b.txt").write_text("Invoices are usually paid within thirty days by customers.")
    with Engine(index_dir, create=True) as eng:
        eng.index([docs])
        hits = eng.search("XK-4471", k=2)
    assert Path(hits[0].path).name == "a.txt"
    assert "keywords" in hits[0].reason and "xk, 4471" in hits[0].reason


def test_long_document_is_chunked_with_overlap(tmp_path: Path, index_dir: Path):
    docs = tmp_path / "d"
    docs.mkdir()
    words = [f"word{i}" for i in range(3000)]
    words[2500] = "xylophone"
    (docs / "long.txt").write_text(" ".join(words))
    with Engine(index_dir, create=True) as eng:
        eng.index([docs])
        hit = eng.search("xylophone", k=1)[0]
        seg = hit.segments[0]
        body = (docs / "long.txt").read_text()
        assert "xylophone" in body[int(seg.start) : int(seg.end)]
        assert eng.status()["spaces"]["text"]["vectors"] > 20


def test_cli_search_json_contract(corpus: Path, index_dir: Path):
    res = run_cli("index", str(corpus), "--index", str(index_dir), "--json")
    assert res.returncode == 0, res.stderr
    counts = json.loads(res.stdout)
    assert counts["added"] == 6
    for key in ("added", "changed", "moved", "deleted", "unchanged", "failed", "pending"):
        assert isinstance(counts[key], int)
    res = run_cli("search", "tomato seedlings", "--index", str(index_dir), "--json", "-k", "2")
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert len(hits) == 2
    assert hits[0]["path"].endswith("garden.md") and hits[0]["type"] == "text"
    assert hits[0]["score"] >= hits[1]["score"]
    seg = hits[0]["segments"][0]
    assert {"start", "end", "text"} <= set(seg)
    res = run_cli("status", "--index", str(index_dir), "--json")
    status = json.loads(res.stdout)
    assert status["types"]["text"]["indexed"] == 6
    assert status["spaces"]["text"]["vectors"] >= 6
    plain = run_cli("search", "tomato", "--index", str(index_dir), "--type", "text")
    assert plain.returncode == 0 and "garden.md" in plain.stdout


def test_remove_forgets_files(engine: Engine, corpus: Path):
    assert engine.remove([corpus / "garden.md"]) == 1
    assert all(not h.path.endswith("garden.md") for h in engine.search("garden", k=10))
    assert engine.status()["files"] == 5
    with pytest.raises(UserError):
        engine.remove([corpus / "garden.md"])


def test_reason_of_a_stemmed_keyword_match_has_no_empty_brackets(tmp_path: Path, index_dir: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "owls.txt").write_text("Two field studies of barn owls nesting in old churches.")
    with Engine(index_dir, create=True) as eng:
        eng.index([docs])
        hit = eng.search("study", k=1, literal=True)[0]
    assert "keywords" in hit.reason and "()" not in hit.reason
