"""scripts/eval_retrieval.py: metric functions, title cleaning, labelled sets, one small run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import load_script

ev = load_script("eval_retrieval")


# ---- metrics, hand-computed ----------------------------------------------------------------


def test_recall_at_single_relevant() -> None:
    ranked = ["a", "b", "c", "d"]
    assert ev.recall_at(ranked, {"c"}, 1) == 0.0
    assert ev.recall_at(ranked, {"c"}, 2) == 0.0
    assert ev.recall_at(ranked, {"c"}, 3) == 1.0
    assert ev.recall_at(ranked, {"c"}, 10) == 1.0  # k beyond the list
    assert ev.recall_at(ranked, {"z"}, 10) == 0.0


def test_recall_at_several_relevant() -> None:
    ranked = ["a", "b", "c", "d", "e"]
    assert ev.recall_at(ranked, {"b", "x"}, 5) == 0.5
    assert ev.recall_at(ranked, {"a", "d", "x", "y"}, 1) == 0.25
    assert ev.recall_at(ranked, {"a", "d", "x", "y"}, 4) == 0.5
    assert ev.recall_at(ranked, ["a", "a"], 1) == 1.0  # relevant counted as a set


def test_reciprocal_rank() -> None:
    ranked = ["a", "b", "c", "d"]
    assert ev.reciprocal_rank(ranked, {"a"}) == 1.0
    assert ev.reciprocal_rank(ranked, {"c"}) == pytest.approx(1 / 3)
    assert ev.reciprocal_rank(ranked, {"d", "b"}) == 0.5  # the first relevant counts
    assert ev.reciprocal_rank(ranked, {"c"}, k=2) == 0.0  # beyond the cut-off
    assert ev.reciprocal_rank(ranked, {"z"}) == 0.0
    assert ev.reciprocal_rank([], {"a"}) == 0.0


def test_metrics_reject_empty_relevant() -> None:
    with pytest.raises(ValueError):
        ev.recall_at(["a"], set(), 1)
    with pytest.raises(ValueError):
        ev.reciprocal_rank(["a"], set())
    with pytest.raises(ValueError):
        ev.summarise([])


def test_summarise() -> None:
    runs = [
        (["a", "b", "c"], {"a"}),  # rank 1
        (["a", "b", "c"], {"b"}),  # rank 2
        (["a", "b", "c", "d", "e", "f"], {"f", "z"}),  # rank 6, half the relevant
        (["a", "b"], {"q"}),  # missed
    ]
    s = ev.summarise(runs)
    assert s.queries == 4
    assert s.recall[1] == pytest.approx(1 / 4)
    assert s.recall[5] == pytest.approx(2 / 4)
    assert s.recall[10] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert s.mrr == pytest.approx((1 + 1 / 2 + 1 / 6 + 0) / 4)
    s5 = ev.summarise(runs, ks=(2,), mrr_k=5)
    assert s5.recall == {2: pytest.approx(2 / 4)}
    assert s5.mrr == pytest.approx((1 + 1 / 2) / 4)


# ---- title cleaning, labels ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        ("Sorting HOW TO &#8212; Python 3.11.2 documentation", "Sorting HOW TO"),
        ("Built-in Functions — Python 3.11.2 documentation", "Built-in Functions"),
        ("2. Built-in Types &#8212; Python 3.11.2 documentation", "Built-in Types"),
        (
            "xml.dom — The Document Object Model API — Python 3.12.0 documentation",
            "xml.dom — The Document Object Model API",
        ),
        ("9.7. Pattern Matching", "Pattern Matching"),
        ("Chapter 48. Background Worker Processes", "Background Worker Processes"),
        ("Appendix K. PostgreSQL Limits", "PostgreSQL Limits"),
        ("J.5. Style Guide", "Style Guide"),
        ("Part II. The SQL Language", "The SQL Language"),
        ("46.10. Python 2 vs.\n   Python 3", "Python 2 vs. Python 3"),
        ("SPI_execute_plan", "SPI_execute_plan"),
        ("A Brief History of Time", "A Brief History of Time"),
        ("PostgreSQL 15.20 Documentation", ""),
        ("3.11.2 Documentation", ""),
        (
            "37.9. collation_character_set_\u200bapplicability",
            "collation_character_set_applicability",
        ),
        ("&lt;no title&gt; &#8212; Python 3.11.2 documentation", ""),
        ("12.", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_title(raw: str | None, query: str) -> None:
    assert ev.clean_title(raw) == query


def test_labels_and_phrases() -> None:
    assert ev.label_of(Path("animals/blister_beetle.png")) == "blister beetle"
    assert ev.label_of(Path("Bass-Drum.ogg")) == "bass drum"
    assert ev.phrase("a picture of {a} {label}", "cat") == "a picture of a cat"
    assert ev.phrase("a picture of {a} {label}", "eagle") == "a picture of an eagle"
    assert ev.phrase("a picture of {a} {label}", "apples") == "a picture of apples"
    assert ev.phrase("the sound of {a} {label}", "bus") == "the sound of a bus"


def test_label_set_hides_labels(tmp_path: Path) -> None:
    files = []
    for folder, name in [("animals", "cat"), ("animals", "dog"), ("food", "apple")]:
        (tmp_path / folder).mkdir(exist_ok=True)
        files.append(tmp_path / folder / f"{name}.png")
        files[-1].write_bytes(b"x")
    s = ev.build_label_set("images-labels", "image", files, "a picture of {a} {label}", 2, 0)
    assert len(s.queries) == 2
    assert all(not any(lab in key for lab in ("cat", "dog", "apple")) for key in s.files)
    for query, relevant in s.queries:
        (key,) = relevant
        assert ev.label_of(s.files[key]) in query


def test_stage_mirrors_and_prunes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.html").write_text("a")
    (src / "b.html").write_text("b")
    dest = tmp_path / "dest"
    keys = ev.stage({"x/a.html": src / "a.html", "b.html": src / "b.html"}, dest)
    assert sorted(keys.values()) == ["b.html", "x/a.html"]
    assert (dest / "x" / "a.html").read_text() == "a"
    ev.stage({"b.html": src / "b.html"}, dest)
    assert not (dest / "x").exists() and (dest / "b.html").exists()


def test_fetch_failure_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    def failing(cmd, **_kw):
        return subprocess.CompletedProcess(cmd, 1, "", "E: Unable to locate package\n")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(ev.EvalError, match="could not fetch sample set 'bigdocs'.*locate"):
        ev.ensure_samples("bigdocs", tmp_path)


def test_ranking_modes_set_and_restore_the_engine_params() -> None:
    from types import SimpleNamespace

    import searchengine.search as search

    shipped = search.RankParams()
    vector = ev.rank_params(ev.Mode("v", vector_weight=1.0, name_bonus=0.0, cosine="raw"))
    assert (vector.vector_weight, vector.name_bonus, vector.calibration) == (1.0, 0.0, "raw")
    assert vector.bm25_half == shipped.bm25_half  # the rest as shipped
    assert ev.rank_params(ev.FUSED) == shipped
    fitted = {"text": (0.0, 0.2)}
    assert search.calibrate("text", 0.5, fitted, vector) == pytest.approx(0.75)  # plain cosine
    family = ev.rank_params(ev.Mode("f", cosine="family"))
    lo, hi = search.COSINE_RANGE["text"]
    assert search.calibrate("text", hi, fitted, family) == pytest.approx(1.0)  # fit ignored
    assert search.calibrate("text", lo, fitted, family) == pytest.approx(0.0)
    eng = SimpleNamespace(params=shipped)
    with ev.ranking(eng, ev.Mode("b", vector_weight=0.0)):
        assert eng.params.vector_weight == 0.0 and eng.params.calibration == "fitted"
    assert eng.params is shipped
    with pytest.raises(RuntimeError), ev.ranking(eng, ev.Mode("b", vector_weight=0.0)):
        raise RuntimeError
    assert eng.params is shipped


def test_cli_rejects_unknown_set(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        ev.parse_args(["--sets", "docs-titles,nonsense"])
    assert exc.value.code == 2
    assert "nonsense" in capsys.readouterr().err


# ---- a small end-to-end run ------------------------------------------------------------------

TOPICS = {
    "volcanoes": "Volcanoes erupt when magma rises through the crust; lava flows and ash clouds.",
    "bread": "Knead the dough, let the yeast make it rise, then bake the loaf until crusty.",
    "chess": "Open with the king's pawn, develop knights and bishops, castle early in chess.",
    "tides": "The moon's gravity pulls the oceans, giving high and low tides twice a day.",
    "bees": "Honey bees collect nectar and pollen and dance to show the hive where flowers are.",
    "guitar": "Tune the six strings of the guitar and practise chords and finger picking.",
    "glaciers": "Glaciers are rivers of ice that carve valleys as they slowly move downhill.",
    "taxes": "File your income tax return before the deadline and keep receipts for deductions.",
    "sleep": "Adults need seven to nine hours of sleep; a dark quiet bedroom helps rest.",
    "rockets": "Rocket engines burn fuel and oxidiser to push a spacecraft into orbit.",
    "coffee": "Grind roasted coffee beans, pour hot water slowly and let the brew drip.",
    "knitting": "Cast on stitches with two needles and knit rows of wool into a scarf.",
    "sharks": "Sharks are fish with cartilage skeletons and rows of replaceable teeth.",
    "compost": "Kitchen scraps and leaves decompose into compost that feeds garden soil.",
    "passwords": "Use a long unique password for every account and turn on two-factor login.",
    "marathon": "Training for a marathon means long slow runs and rest days each week.",
    "origami": "Fold a square sheet of paper along creases to make a paper crane.",
    "eclipses": "A solar eclipse happens when the moon passes between the sun and the earth.",
    "vaccines": "Vaccines train the immune system to recognise a virus before an infection.",
    "bicycles": "Oil the bicycle chain, pump the tyres and check the brakes before a ride.",
}


def write_pages(root: Path) -> Path:
    site = root / "site-doc"
    for i, (topic, body) in enumerate(TOPICS.items(), 1):
        sub = site / ("guide" if i % 2 else "howto")
        sub.mkdir(parents=True, exist_ok=True)
        title = f"{i}. All About {topic.title()} &#8212; Python 3.11.2 documentation"
        paragraphs = "".join(f"<p>{body} ({n})</p>" for n in range(3))
        (sub / f"page{i:02d}.html").write_text(
            f"<html><head><title>{title}</title></head><body><h1>{topic}</h1>"
            f"{paragraphs}</body></html>",
            encoding="utf-8",
        )
    return site


def test_docs_titles_end_to_end(tmp_path: Path) -> None:
    site = write_pages(tmp_path)
    report = ev.evaluate_docs([site], tmp_path / "eval", n_queries=12, n_corpus=20, seed=1)
    modes = [r.mode for r in report.rows]
    assert modes == [
        "fused",
        "fused, no MMR",
        "fused, no MMR, family range",
        "bm25 only",
        "vector only",
        "random (chance)",
    ]
    for row in report.rows:
        s = row.summary
        assert s.queries == 12
        values = [s.recall[1], s.recall[5], s.recall[10], s.mrr]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert s.recall[10] >= s.recall[5] >= s.recall[1]
        assert s.recall[1] <= s.mrr <= s.recall[10]
    fused = report.rows[0].summary
    assert fused.recall[10] >= 0.9  # distinct topics: a title finds its own page
    assert any("20 of 20 HTML pages indexed" in n for n in report.notes)
    table = ev.markdown_table(report.rows)
    assert table.count("\n") == 1 + len(report.rows) and "| docs-titles | fused | 12 |" in table
