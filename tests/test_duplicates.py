"""`searchengine duplicates`: exact copies by content hash, near duplicates by vector distance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from searchengine import Engine, UserError
from searchengine.duplicates import (
    DuplicateGroup,
    _linked,
    _min_pairwise,
    file_means,
    find_duplicates,
    human_size,
    render_text,
)

FERRY = (
    "The harbour ferry leaves at seven every morning and returns before sunset. "
    "Tickets are sold at the kiosk next to the lighthouse, and bicycles travel free."
)
UNRELATED = {
    "planets.txt": "Jupiter is the largest planet in the solar system. Its moons Io, Europa, "
    "Ganymede and Callisto were discovered by Galileo in 1610.",
    "code.py": "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
    "        a, b = b, a + b\n    return a\n",
    "budget.md": "# Budget\n\nFinance asked every team to cut travel costs by ten percent "
    "and to review the payroll before the quarterly meeting.",
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory):
    """Two copies in different folders, a one-word edit, unrelated files; then a third copy
    added by a later run (which shares its twin's vectors instead of being embedded)."""
    root = tmp_path_factory.mktemp("dups")
    docs = root / "docs"
    (docs / "trips").mkdir(parents=True)
    (docs / "archive" / "old").mkdir(parents=True)
    (docs / "trips" / "ferry.txt").write_text(FERRY, encoding="utf-8")
    (docs / "archive" / "old" / "ferry (copy).txt").write_text(FERRY, encoding="utf-8")
    (docs / "ferry-edited.txt").write_text(FERRY.replace("seven", "eight"), encoding="utf-8")
    for name, body in UNRELATED.items():
        (docs / name).write_text(body, encoding="utf-8")
    with Engine(root / "index", create=True) as engine:
        first = engine.index([docs])
        assert first.added == 6 and first.failed == 0
        (docs / "later copy.txt").write_text(FERRY, encoding="utf-8")
        second = engine.index([docs])
        assert second.added == 1 and second.unchanged == 6
        yield engine, docs


def _names(group: DuplicateGroup) -> list[str]:
    return sorted(Path(f.path).name for f in group.files)


def test_exact_group_holds_every_copy_with_wasted_bytes(indexed):
    engine, docs = indexed
    groups = find_duplicates(engine)
    exact = [g for g in groups if g.kind == "exact"]
    assert len(exact) == 1
    group = exact[0]
    assert group.space is None and group.similarity is None
    assert _names(group) == ["ferry (copy).txt", "ferry.txt", "later copy.txt"]
    size = len(FERRY.encode())
    assert [f.size for f in group.files] == [size] * 3
    assert all(f.type == "text" for f in group.files)
    assert group.wasted_bytes == 2 * size
    assert str(docs / "archive" / "old" / "ferry (copy).txt") in [f.path for f in group.files]


def test_later_copy_shares_its_twins_vectors(indexed):
    engine, _ = indexed
    by_name = {Path(r.path).name: r for r in engine.catalog.all_files()}
    ids, means = file_means(engine.catalog, "text")
    row = {int(fid): i for i, fid in enumerate(ids)}
    twin = means[row[by_name["ferry.txt"].id]]
    later = means[row[by_name["later copy.txt"].id]]
    np.testing.assert_array_equal(twin, later)
    # the bulk means are the per-file means the engine uses for `similar`
    for name in ("ferry-edited.txt", "planets.txt", "code.py"):
        one = engine.catalog.mean_vectors(by_name[name].id)["text"]
        np.testing.assert_allclose(means[row[by_name[name].id]], one, atol=1e-5)


def test_near_group_pairs_the_edit_with_one_copy_only(indexed):
    engine, _ = indexed
    near = [g for g in find_duplicates(engine, threshold=0.95) if g.kind == "near"]
    assert len(near) == 1
    group = near[0]
    assert group.space == "text"
    assert 0.95 <= group.similarity < 0.999
    names = _names(group)
    assert len(names) == 2 and "ferry-edited.txt" in names
    # the exact copies collapse to one representative; unrelated files stay out
    assert len(set(names) & {"ferry.txt", "ferry (copy).txt", "later copy.txt"}) == 1
    assert not set(names) & set(UNRELATED)
    assert group.wasted_bytes == len(FERRY.encode())  # "seven" -> "eight": same length


def test_strict_threshold_finds_no_near_group(indexed):
    engine, _ = indexed
    groups = find_duplicates(engine, threshold=0.999)
    assert [g.kind for g in groups] == ["exact"]


def test_loose_threshold_never_groups_unrelated_topics(indexed):
    engine, _ = indexed
    near = [g for g in find_duplicates(engine, threshold=0.6) if g.kind == "near"]
    assert len(near) == 1 and not set(_names(near[0])) & set(UNRELATED)


def test_exact_only_and_type_filter(indexed):
    engine, _ = indexed
    assert [g.kind for g in find_duplicates(engine, near=False)] == ["exact"]
    assert find_duplicates(engine, types=["image"]) == []
    assert find_duplicates(engine, types=["image", "audio", "video"], near=False) == []
    assert len(find_duplicates(engine, types=["text"])) == 2
    with pytest.raises(UserError):
        find_duplicates(engine, types=["sculpture"])
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(UserError):
            find_duplicates(engine, threshold=bad)


def test_render_text_and_json(indexed):
    engine, _ = indexed
    groups = find_duplicates(engine)
    text = render_text(groups)
    size = len(FERRY.encode())
    assert "exact copies: 3 files, " + human_size(2 * size) + " wasted" in text
    assert "near duplicates in text (similarity 0." in text
    for group in groups:
        for f in group.files:
            assert f"{human_size(f.size):>9}  {f.path}" in text
    assert "planets.txt" not in text
    assert text.splitlines()[-1].startswith("2 groups (1 exact, 1 near)")
    assert render_text([]) == "no duplicates found"

    data = json.loads(json.dumps([g.to_json() for g in groups]))
    assert [d["kind"] for d in data] == ["exact", "near"]
    assert data[0]["count"] == 3 and data[0]["wasted_bytes"] == 2 * size
    assert data[0]["total_bytes"] == 3 * size and data[0]["similarity"] is None
    assert data[1]["space"] == "text" and 0.95 <= data[1]["similarity"] < 0.999
    assert set(data[1]["files"][0]) == {"path", "size", "type"}


def test_linking_is_transitive_and_reports_the_weakest_pair():
    # a~b and b~c are above 0.9, a~c is not: single linkage joins all three;
    # d is alone, e and f are a separate pair.
    def unit(deg: float) -> list[float]:
        r = np.radians(deg)
        return [np.cos(r), np.sin(r), 0.0, 0.0]

    vecs = np.array(
        [unit(0), unit(20), unit(40), [0, 0, 1, 0], [0, 0.05, 0, 1], [0, 0, 0.05, 1]],
        dtype=np.float32,
    )
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    groups = sorted(sorted(g.tolist()) for g in _linked(vecs, 0.9))
    assert groups == [[0, 1, 2], [4, 5]]
    assert _min_pairwise(vecs[[0, 1, 2]]) == pytest.approx(np.cos(np.radians(40)), abs=1e-5)
    assert _linked(vecs, 0.99999) == []


def test_human_size():
    assert human_size(0) == "0 B"
    assert human_size(999) == "999 B"
    assert human_size(1234) == "1.2 kB"
    assert human_size(1_200_000) == "1.2 MB"
    assert human_size(999_990) == "1.0 MB"
    assert human_size(3 * 10**12) == "3.0 TB"


def test_cli_duplicates_json_and_text(tmp_path):
    from tests.conftest import run_cli

    docs = tmp_path / "docs"
    (docs / "x").mkdir(parents=True)
    body = "Ferry timetable for the island crossing, summer schedule."
    (docs / "one.txt").write_text(body)
    (docs / "x" / "two.txt").write_text(body)
    (docs / "other.txt").write_text("Completely different: notes about violin practice.")
    index = tmp_path / "index"
    assert run_cli("index", str(docs), "--index", str(index)).returncode == 0
    res = run_cli("duplicates", "--index", str(index), "--json")
    assert res.returncode == 0, res.stderr
    groups = json.loads(res.stdout)
    exact = [g for g in groups if g["kind"] == "exact"]
    assert len(exact) == 1 and exact[0]["wasted_bytes"] == len(body)
    assert sorted(Path(f["path"]).name for f in exact[0]["files"]) == ["one.txt", "two.txt"]
    res = run_cli("duplicates", "--index", str(index), "--exact-only")
    assert res.returncode == 0 and "exact copies" in res.stdout and "two.txt" in res.stdout
    res = run_cli("duplicates", "--index", str(index), "--threshold", "7")
    assert res.returncode == 2 and "threshold" in res.stderr
