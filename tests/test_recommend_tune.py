"""`recommend` (Rocchio over examples) and `tune` (a query-side adapter) end to end, on the
real text model (packaged MiniLM: its rankings mean something) over a small corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from searchengine import Engine
from searchengine import tune as tuning
from searchengine.adapters import AdaptedEncoder, records
from searchengine.encoders.onnx_query import OnnxQueryEncoder
from searchengine.encoders.registry import ModelRegistry
from searchengine.errors import UserError
from tests.conftest import TOPICS, run_cli, write_corpus

EXTRA = {
    "soup.txt": "Simmer onions, carrots and celery in stock to make a vegetable soup.",
    "bread.txt": "Knead a dough of flour, water and yeast, let it rise, then bake the bread.",
    "mars.txt": "Mars is a red planet with the tallest volcano, Olympus Mons, and two moons.",
    "saturn.txt": "Saturn has bright rings of ice and rock and more than eighty moons.",
    "roses.txt": "Prune roses in late winter and feed them so they bloom all summer.",
}

PAIRS = [
    ("making breakfast food", "recipe.html"),
    ("a warm dinner from vegetables", "soup.txt"),
    ("baking at home", "bread.txt"),
    ("planets and their moons", "astronomy.rst"),
    ("the red planet", "mars.txt"),
    ("a planet with rings", "saturn.txt"),
    ("growing vegetables", "garden.md"),
    ("flowers in the garden", "roses.txt"),
    ("company spending", "budget.txt"),
    ("database outage", "server.log"),
    ("a number sequence in code", "code.py"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus, index) made once for the module; tests that write work on a copy."""
    root = tmp_path_factory.mktemp("rt")
    docs = write_corpus(root / "docs", {**TOPICS, **EXTRA})
    with Engine(root / "index", create=True, models={"speech": "off"}) as eng:
        summary = eng.index([docs])
    assert summary.added == len(TOPICS) + len(EXTRA)
    return docs, root / "index"


@pytest.fixture
def writable(built, tmp_path: Path) -> tuple[Path, Path]:
    docs, index = built
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    return docs, copy


def names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def write_pairs(path: Path, docs: Path, rows=PAIRS, header: bool = True) -> Path:
    lines = ["query,path"] if header else []
    lines += [f'"{q}",{docs / name}' for q, name in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- recommend -------------------------------------------------------------------------------


def test_recommend_leaves_out_the_examples_and_names_the_nearest(built):
    docs, index = built
    with Engine(index, readonly=True) as eng:
        hits = eng.recommend([docs / "recipe.html", docs / "astronomy.rst"], k=12, cutoff=False)
    found = names(hits)
    assert "recipe.html" not in found and "astronomy.rst" not in found
    nearest = {Path(h.path).name: Path(h.nearest_example).name for h in hits}
    assert nearest["saturn.txt"] == nearest["mars.txt"] == "astronomy.rst"
    assert nearest["bread.txt"] == nearest["soup.txt"] == "recipe.html"
    assert len(found) == len(TOPICS) + len(EXTRA) - 2
    last_related = max(found.index(n) for n in ("saturn.txt", "mars.txt", "bread.txt"))
    assert last_related < found.index("code.py")  # real model: meaning counts


def test_not_moves_the_page_away_from_the_disliked(built):
    docs, index = built
    liked, disliked = [docs / "recipe.html"], [docs / "astronomy.rst"]
    with Engine(index, readonly=True) as eng:
        plain = eng.recommend(liked, k=12, cutoff=False)
        steered = eng.recommend(liked, disliked, k=12, cutoff=False)
    assert "astronomy.rst" not in names(steered)  # a disliked example is never returned
    before = {Path(h.path).name: h.raw_score for h in plain}
    after = {Path(h.path).name: h.raw_score for h in steered}
    drop = {n: before[n] - after[n] for n in after}
    planets = ("mars.txt", "saturn.txt")
    assert min(drop[n] for n in planets) > max(d for n, d in drop.items() if n not in planets)
    assert all(names(steered).index(n) > names(plain).index(n) for n in planets)


def test_recommend_cli_json_and_bad_paths(built, tmp_path):
    docs, index = built
    res = run_cli("recommend", str(docs / "mars.txt"), "--index", str(index), "-k", "3", "--json")
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert hits and all(h["nearest_example"].endswith("mars.txt") for h in hits)
    assert hits[0]["path"].endswith(("saturn.txt", "astronomy.rst"))
    for args in (
        [str(tmp_path / "nope.txt")],
        [str(docs / "mars.txt"), "--not", str(docs / "mars.txt")],
    ):
        bad = run_cli("recommend", *args, "--index", str(index))
        assert bad.returncode != 0
        assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# ---- tune ------------------------------------------------------------------------------------


def ranking(eng: Engine, query: str) -> list[str]:
    return names(eng.search(query, k=16, literal=True, cutoff=False, diverse=False))


def test_tune_stores_an_adapter_used_by_both_query_paths_and_reset_restores(writable, tmp_path):
    docs, index = writable
    queries = ["planets and their moons", "food", "a garden in spring", "errors"]
    with Engine(index, readonly=True) as eng:
        original = [ranking(eng, q) for q in queries]
    csv_path = write_pairs(tmp_path / "pairs.csv", docs)
    res = run_cli("tune", str(csv_path), "--index", str(index), "--eval", "0.3")
    assert res.returncode == 0, res.stderr
    assert "held-out pairs" in res.stdout and "->" in res.stdout
    with Engine(index, readonly=True) as eng:
        rec = records(eng.catalog)["text"]
        assert rec["model"] == eng.config.model_key("text") and rec["identity"]
        assert (index / "adapters" / rec["file"]).is_file()
        lean = eng.ranker().encoder_for("text")
        assert isinstance(lean, AdaptedEncoder) and isinstance(lean.base, OnnxQueryEncoder)
        base = lean.base.embed_queries(queries)
        lean_rows = lean.embed_queries(queries)
        assert np.abs(lean_rows - base).max() > 1e-3  # the adapter changes the query
        lean_ranks = [ranking(eng, q) for q in queries]
        eng.models = ModelRegistry(eng.config)  # no query cache: the full (torch) model
        full = eng.ranker().encoder_for("text")
        assert isinstance(full, AdaptedEncoder) and not isinstance(full.base, OnnxQueryEncoder)
        full_rows = full.embed_queries(queries)
        assert np.allclose(np.sum(full_rows * lean_rows, axis=1), 1.0, atol=1e-3)
        assert [ranking(eng, q) for q in queries] == lean_ranks
    res = run_cli("tune", "--reset", "--index", str(index))
    assert res.returncode == 0 and "removed" in res.stdout
    with Engine(index, readonly=True) as eng:
        assert [ranking(eng, q) for q in queries] == original
        assert "text" not in records(eng.catalog)
    assert not any((index / "adapters").glob("*.npy"))


def test_tune_skips_unknown_files_and_an_adapter_of_another_model_is_not_used(writable, tmp_path):
    docs, index = writable
    rows = [*PAIRS, ("something lost", "missing.txt")]
    csv_path = write_pairs(tmp_path / "pairs.csv", docs, rows)
    with csv_path.open("a") as fh:
        fh.write("only one column\n")
    with Engine(index) as eng:
        report = tuning.tune(eng, csv_path, "text")
        assert report.used == len(PAIRS) and report.train_pairs == len(PAIRS)
        assert any("missing.txt is not in the index" in s for s in report.skipped)
        assert any("wants two columns" in s for s in report.skipped)
        assert "text" in eng.query_adapters()
        assert eng.status()["spaces"]["text"]["adapter"]["in_use"] is True
        rec = records(eng.catalog)["text"]
        eng.catalog.set_meta_value("adapter:text", json.dumps({**rec, "model": "other-model"}))
        assert eng.query_adapters() == {}  # a model change retires it
        assert "other-model" in eng.status()["spaces"]["text"]["adapter"]["why_not"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "holds no"),
        ([("the red planet", "mars.txt")], "at least two pairs"),
        ([("a", "lost1.txt"), ("b", "lost2.txt")], "not in the index"),
        ([("a", "mars.txt"), ("b", "mars.txt")], "two different indexed files"),
    ],
)
def test_tune_refuses_too_few_pairs_with_a_reason(built, tmp_path, rows, message):
    docs, index = built
    csv_path = write_pairs(tmp_path / "pairs.csv", docs, rows, header=False)
    with Engine(index, readonly=True) as eng, pytest.raises(UserError, match=message):
        tuning.tune(eng, csv_path, "text")


def test_tune_cli_bad_input_is_one_line(built, tmp_path):
    docs, index = built
    csv_path = write_pairs(tmp_path / "pairs.csv", docs, PAIRS[:3])
    for args, message in (
        ([str(csv_path), "--space", "clip"], "holds no vectors"),
        ([str(tmp_path / "absent.csv")], "cannot read"),
        ([str(csv_path), "--eval", "1.5"], "--eval"),
    ):
        res = run_cli("tune", *args, "--index", str(index))
        assert res.returncode != 0 and message in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_training_moves_queries_toward_their_files():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(40, 16)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    rotation = np.linalg.qr(rng.normal(size=(16, 16)))[0].astype(np.float32)
    queries = targets @ rotation  # the domain's queries land rotated away from their files
    params = tuning.TuneParams(epochs=200, lr=1e-2, identity_weight=0.0)
    w, first, last = tuning.train(queries, targets, np.arange(40), params)
    mapped = queries @ w.T
    mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)
    assert last < first
    hit_before = np.mean(np.argmax(queries @ targets.T, axis=1) == np.arange(40))
    hit_after = np.mean(np.argmax(mapped @ targets.T, axis=1) == np.arange(40))
    assert hit_after > hit_before + 0.3


# ---- the tiny random CLIP (plumbing only: its rankings mean nothing) ------------------------


def test_recommend_and_tune_in_the_clip_space_on_the_tiny_model(test_models, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(8):
        pixels = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(pics / f"pic{i}.png")
    index = tmp_path / "index"
    tiny = {"clip": str(test_models["clip_config"]), "speech": "off"}
    with Engine(
        index, create=True, models=tiny, clip_pretrained=str(test_models["clip_checkpoint"])
    ) as eng:
        assert eng.index([pics]).added == 8
    liked = [pics / "pic0.png", pics / "pic1.png"]
    with Engine(index, readonly=True) as eng:
        hits = eng.recommend(liked, [pics / "pic2.png"], k=10, cutoff=False)
    assert sorted(names(hits)) == [f"pic{i}.png" for i in range(3, 8)]
    assert all(Path(h.nearest_example).name in ("pic0.png", "pic1.png") for h in hits)
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("".join(f"noise number {i},{pics / f'pic{i}.png'}\n" for i in range(8)))
    with Engine(index) as eng:
        report = tuning.tune(eng, csv_path, "clip", eval_share=0.25)
        assert report.held_pairs == 2 and report.train_pairs == 6
        assert [s.name for s in report.scores][0] == "held-out pairs"
    with Engine(index, readonly=True) as eng:
        lean = eng.ranker().encoder_for("clip")
        assert isinstance(lean, AdaptedEncoder) and isinstance(lean.base, OnnxQueryEncoder)
        rows = lean.embed_queries(["noise number 3"])
        eng.models = ModelRegistry(eng.config)
        full = eng.ranker().encoder_for("clip").embed_queries(["noise number 3"])
        assert float(rows[0] @ full[0]) > 0.999
    with Engine(index) as eng:
        assert tuning.reset(eng, "clip") and not tuning.reset(eng, "clip")
        assert not isinstance(eng.ranker().encoder_for("clip"), AdaptedEncoder)


def test_semicolon_pairs_are_read_and_a_read_only_engine_is_refused_before_training(
    built, tmp_path
):
    docs, index = built
    csv_path = tmp_path / "pairs.csv"
    lines = [f"{q};{docs / name}" for q, name in PAIRS]
    csv_path.write_text("query;path\n" + "\n".join(lines) + "\n", encoding="utf-8")
    pairs, problems = tuning.read_pairs(csv_path)
    assert [(p.query, Path(p.path).name) for p in pairs] == list(PAIRS) and not problems
    with Engine(index, readonly=True) as eng, pytest.raises(UserError, match="read-only"):
        tuning.tune(eng, csv_path, "text")


def test_a_folder_as_example_is_named_a_folder(built):
    docs, index = built
    with Engine(index, readonly=True) as eng, pytest.raises(UserError, match="a folder, not"):
        eng.recommend([docs])
