"""A model change is checked before anything is written: a mistyped name or a missing
checkpoint is one clear line and the index is left exactly as it was; a model given by a
relative path is stored absolute, so the index works from any folder (issue 10, item 1)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from searchengine import Engine
from tests.conftest import run_cli, write_corpus


def other_text_model(eng: Engine, where: Path) -> Path:
    """A copy of the index's text model that is another model by content: a changed
    config file (a model's identity is its files' content, not its folder's name)."""
    shutil.copytree(eng.models.resolve("text").location, where)
    config = where / "config_sentence_transformers.json"
    config.write_text(config.read_text().rstrip().rstrip("}") + ', "variant": "other"}')
    return where


def _fingerprint(index: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(index.iterdir())
        if p.is_file() and p.name not in ("lock", "catalog.db-shm", "catalog.db-wal")
    }


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("models")
    docs = write_corpus(base / "docs")
    res = run_cli("index", str(docs), "--index", str(base / "index"))
    assert res.returncode == 0, res.stderr
    return docs, base / "index"


@pytest.mark.parametrize(
    "args",
    [
        ("--text", "sentence-transformers/all-MiniLM-L6-v2-typo"),
        ("--clip-pretrained", "missing/checkpoint.pt"),
        ("--clip", "ViT-B-32-nonexistent"),
        ("--clap", "./no-such-clap-folder"),
    ],
)
def test_bad_model_name_changes_nothing(indexed, args) -> None:
    docs, index = indexed
    before = _fingerprint(index)
    res = run_cli("index", str(docs), "--index", str(index), *args)
    assert res.returncode == 2
    assert "Nothing was changed" in res.stderr and "Traceback" not in res.stderr
    assert _fingerprint(index) == before
    hits = run_cli("search", "planets", "--index", str(index), "--json")
    assert hits.returncode == 0 and "astronomy.rst" in hits.stdout


def test_damaged_checkpoint_changes_nothing(indexed, tmp_path, test_models) -> None:
    """A checkpoint that exists but does not load is refused like a missing one."""
    docs, index = indexed
    before = _fingerprint(index)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(os.urandom(4096))
    res = run_cli("index", str(docs), "--index", str(index),
                  "--clip", str(test_models["clip_config"]), "--clip-pretrained", str(damaged))
    assert res.returncode == 2, res.stderr
    assert "Nothing was changed" in res.stderr and "Traceback" not in res.stderr
    assert _fingerprint(index) == before


def test_relative_checkpoint_is_stored_absolute(tmp_path: Path, test_models) -> None:
    docs = write_corpus(tmp_path / "docs", {"note.txt": "a note about the harbour"})
    cwd = os.getcwd()
    try:
        os.chdir(test_models["clip_checkpoint"].parent)
        with Engine(
            tmp_path / "index",
            create=True,
            models={"clip": test_models["clip_config"].name},
            clip_pretrained=test_models["clip_checkpoint"].name,
        ) as eng:
            assert eng.config.clip_pretrained == str(test_models["clip_checkpoint"].resolve())
            assert eng.config.models["clip"] == str(test_models["clip_config"].resolve())
            eng.index([docs])
    finally:
        os.chdir(cwd)
    with Engine(tmp_path / "index") as eng:  # from another folder: same model, nothing stale
        assert eng.index([docs]).unchanged == 1
        assert eng.models.resolve("clip").location == str(test_models["clip_checkpoint"].resolve())


def test_model_change_refused_by_a_busy_writer_changes_nothing(indexed, tmp_path) -> None:
    import fcntl

    docs, index = indexed
    before = _fingerprint(index)
    other = other_text_model(Engine(index, readonly=True), tmp_path / "minilm-other")
    with open(index / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = run_cli("index", str(docs), "--index", str(index), "--text", str(other))
    assert res.returncode == 2 and "another searchengine process" in res.stderr
    assert _fingerprint(index) == before


def test_model_change_re_embeds_files_outside_the_roots_given(tmp_path) -> None:
    one = write_corpus(tmp_path / "one", {"a.txt": "violin lessons on Tuesday"})
    two = write_corpus(tmp_path / "two", {"b.txt": "harbour cranes at dawn"})
    index = tmp_path / "index"
    with Engine(index, create=True) as eng:
        eng.index([one, two])
        other = other_text_model(eng, tmp_path / "minilm-other")
    with Engine(index, models={"text": str(other)}) as eng:
        summary = eng.index([one])  # only one root given: the other's file is stale too
        assert summary.reembedded == 2
        assert eng.catalog.stale_files("text", eng.config.model_key("text")) == set()
        assert eng.search("cranes in the harbour", k=1)[0].path.endswith("b.txt")


def test_moved_checkpoint_is_the_same_model(tmp_path: Path, test_models) -> None:
    """Identity is content: the CLIP checkpoint moved to another folder re-embeds nothing,
    and its vectors are filed under the new name."""
    from PIL import Image

    library = tmp_path / "library"
    library.mkdir()
    for name, colour in (("red", (220, 20, 20)), ("green", (20, 200, 40)), ("blue", (10, 30, 230))):
        Image.new("RGB", (64, 48), colour).save(library / f"{name}.png")
    first = tmp_path / "first"
    first.mkdir()
    for name in ("clip_config", "clip_checkpoint"):
        shutil.copy2(test_models[name], first / test_models[name].name)
    config = first / test_models["clip_config"].name
    weights = first / test_models["clip_checkpoint"].name
    index = tmp_path / "index"
    tiny = {"models": {"clip": str(config)}, "clip_pretrained": str(weights)}
    with Engine(index, create=True, **tiny) as eng:
        added = eng.index([library]).added
        before = eng.search("a red square", k=3, types=["image"])
    moved = tmp_path / "moved"
    first.rename(moved)
    config, weights = moved / config.name, moved / weights.name
    with Engine(index, models={"clip": str(config)}, clip_pretrained=str(weights)) as eng:
        summary = eng.index([library])
        assert (summary.reembedded, summary.changed, summary.unchanged) == (0, 0, added)
        key = eng.config.model_key("clip")
        assert eng.catalog.models_in_use("clip") == {key}
        assert eng.catalog.stale_files("clip", key) == set()
        after = eng.search("a red square", k=3, types=["image"])
        assert [(h.path, round(h.score, 4)) for h in after] == [
            (h.path, round(h.score, 4)) for h in before
        ]
