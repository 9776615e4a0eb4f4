"""The adaptive cutoff: each rule on synthetic score lists, and end to end (Engine and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchengine import Engine, cli
from searchengine.cutoff import Cutoff, kept, threshold
from searchengine.search import RankParams, apply_cutoff
from searchengine.types import Hit

CLEAR_WINNER = [0.92, 0.41, 0.39, 0.38, 0.36, 0.35, 0.33, 0.32, 0.31, 0.30]
FLAT = [0.62, 0.61, 0.60, 0.59, 0.58, 0.58, 0.57, 0.56, 0.55, 0.54]
TWO_TIERS = [0.90, 0.88, 0.86, 0.50, 0.48, 0.47, 0.45]


def count(scores: list[float], rule: Cutoff) -> int:
    return sum(kept(scores, rule))


def test_off_keeps_the_page() -> None:
    assert count(CLEAR_WINNER, Cutoff()) == 10
    assert threshold(CLEAR_WINNER, Cutoff()) == float("-inf")


def test_ratio_to_the_best() -> None:
    assert count(CLEAR_WINNER, Cutoff("ratio", 0.5)) == 1  # 0.41 < 0.46
    assert count(TWO_TIERS, Cutoff("ratio", 0.8)) == 3  # 0.72 needed
    assert count(FLAT, Cutoff("ratio", 0.8)) == 10
    assert count(TWO_TIERS, Cutoff("ratio", 0.52)) == 6  # 0.468 needed: only 0.45 is out


def test_drop_below_the_best() -> None:
    assert count(TWO_TIERS, Cutoff("drop", 0.1)) == 3
    assert count(TWO_TIERS, Cutoff("drop", 0.5)) == 7
    assert count(CLEAR_WINNER, Cutoff("drop", 0.3)) == 1


def test_widest_gap_only_when_wide_enough() -> None:
    assert count(CLEAR_WINNER, Cutoff("gap", 0.2)) == 1
    assert count(TWO_TIERS, Cutoff("gap", 0.2)) == 3
    assert count(FLAT, Cutoff("gap", 0.05)) == 10  # no gap of 0.05 anywhere
    assert count([0.5], Cutoff("gap", 0.0)) == 1


def test_knee_keeps_what_comes_before_the_flat_tail() -> None:
    assert count(CLEAR_WINNER, Cutoff("knee", 0.3)) == 1
    assert count(TWO_TIERS, Cutoff("knee", 0.3)) == 3
    straight = [1.0 - 0.1 * i for i in range(10)]  # no knee on a straight line
    assert count(straight, Cutoff("knee", 0.05)) == 10
    assert count([0.9, 0.1], Cutoff("knee", 0.0)) == 2  # too short to have a knee


def test_floor_cuts_low_scores_but_never_everything() -> None:
    assert count(TWO_TIERS, Cutoff("ratio", 0.0, floor=0.6)) == 3
    assert kept([0.2, 0.3, 0.1], Cutoff("ratio", 0.0, floor=0.6)) == [False, True, False]
    assert count([0.2, 0.1], Cutoff("drop", 0.01, floor=0.9, min_keep=2)) == 2
    assert kept([], Cutoff("gap", 0.1, floor=0.5)) == []


def test_page_order_is_kept_and_ties_stay_together() -> None:
    # MMR may put a lower score before a higher one: the rule cuts by score, not position.
    page = [0.9, 0.3, 0.85, 0.2]
    assert kept(page, Cutoff("drop", 0.1)) == [True, False, True, False]
    assert count([0.8, 0.8, 0.8, 0.1], Cutoff("gap", 0.3)) == 3


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown cutoff rule"):
        threshold([0.5, 0.4], Cutoff("median", 0.5))  # type: ignore[arg-type]


def test_apply_cutoff_counts_what_it_cut() -> None:
    hits = [Hit(path=f"/f{i}", type="text", score=s) for i, s in enumerate(CLEAR_WINNER)]
    page = apply_cutoff(hits, Cutoff("gap", 0.2))
    assert [h.path for h in page] == ["/f0"] and page.cut == 9
    full = apply_cutoff(hits, Cutoff())
    assert len(full) == 10 and full.cut == 0 and isinstance(full, list)


def test_shipped_rule_cuts_a_clear_winner_and_keeps_a_close_page() -> None:
    rule = RankParams().cutoff
    assert rule.rule != "off"
    assert count(CLEAR_WINNER, rule) < len(CLEAR_WINNER)
    assert count(FLAT, rule) == len(FLAT)
    assert count([0.05], rule) == 1  # one weak hit still shows


# ---- end to end -----------------------------------------------------------------------------

TOPICS = {
    "volcano.txt": "Volcanoes erupt when magma rises through the crust; lava and ash clouds.",
    "bread.txt": "Knead the dough, let the yeast make it rise, then bake the loaf until crusty.",
    "chess.txt": "Open with the king's pawn, develop knights and bishops, castle early.",
    "tides.txt": "The moon's gravity pulls the oceans, giving high and low tides twice a day.",
    "bees.txt": "Honey bees collect nectar and pollen and dance to show where flowers are.",
    "guitar.txt": "Tune the six strings of the guitar and practise chords and picking.",
    "glacier.txt": "Glaciers are rivers of ice that carve valleys as they move downhill.",
    "taxes.txt": "File your income tax return before the deadline and keep receipts.",
    "sleep.txt": "Adults need seven to nine hours of sleep; a dark quiet bedroom helps.",
    "rocket.txt": "Rocket engines burn fuel and oxidiser to push a spacecraft into orbit.",
    "coffee.txt": "Grind roasted coffee beans, pour hot water slowly, let the brew drip.",
    "knitting.txt": "Cast on stitches with two needles and knit rows of wool into a scarf.",
    "sharks.txt": "Sharks are fish with cartilage skeletons and rows of replaceable teeth.",
}
QUERY = "sharks cartilage skeletons replaceable teeth"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cutoff")
    docs = root / "docs"
    docs.mkdir()
    for name, body in TOPICS.items():
        (docs / name).write_text(body + "\n", encoding="utf-8")
    with Engine(root / "index", create=True) as eng:
        assert eng.index([docs]).added == len(TOPICS)
    return root / "index"


def test_engine_default_page_is_cut_and_k_or_cutoff_false_keep_it(index: Path) -> None:
    with Engine(index, readonly=True) as eng:
        page = eng.search(QUERY)
        assert Path(page[0].path).name == "sharks.txt"
        assert 1 <= len(page) < 10 and page.cut == 10 - len(page)
        full = eng.search(QUERY, k=10)
        assert len(full) == 10 and full.cut == 0
        assert [h.path for h in full[: len(page)]] == [h.path for h in page]
        assert len(eng.search(QUERY, cutoff=False)) == 10
        assert len(eng.search(QUERY, k=10, cutoff=True)) == len(page)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    cli.main(argv)
    got = capsys.readouterr()
    return got.out, got.err


def test_cli_cuts_by_default_and_all_or_k_show_the_page(
    index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["search", QUERY, "--index", str(index)]
    out, err = run([*base, "--json"], capsys)
    hits = json.loads(out)
    assert 1 <= len(hits) < 10 and Path(hits[0]["path"]).name == "sharks.txt"
    note = json.loads(err.strip().splitlines()[-1])  # stdout stays the list of hits
    assert note == {
        "cut": 10 - len(hits),
        "note": f"{note['cut']} more below the cutoff; --all shows them",
    }
    for extra in (["--all"], ["-k", "10"]):
        out, err = run([*base, "--json", *extra], capsys)
        assert len(json.loads(out)) == 10 and "cut" not in err
    out, _ = run(base, capsys)  # plain output: the note follows the hits
    assert out.rstrip().endswith(f"{10 - len(hits)} more below the cutoff; --all shows them")
