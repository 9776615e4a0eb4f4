"""An Engine kept open (a server, a notebook) sees what another process's `index` commits:
new files, deletions and a refitted calibration, without reopening."""

from __future__ import annotations

import json
from pathlib import Path

from searchengine import Engine
from tests.conftest import run_cli, write_corpus


def test_open_reader_sees_another_process_commits(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "docs")
    index = tmp_path / "index"
    assert run_cli("index", str(docs), "--index", str(index)).returncode == 0
    with Engine(index, readonly=True) as eng:
        assert not any("kayak" in h.path for h in eng.search("paddling a kayak", k=10))
        (docs / "kayak.md").write_text("We paddled the kayak across the fjord at sunrise.")
        (docs / "astronomy.rst").unlink()
        res = run_cli("index", str(docs), "--index", str(index), "--json")
        assert res.returncode == 0, res.stderr
        hits = eng.search("paddling a kayak", k=10)
        assert hits[0].path.endswith("kayak.md")
        assert not any(h.path.endswith("astronomy.rst") for h in eng.search("Jupiter", k=10))
        assert eng.status()["files"] == 6
        similar = eng.similar(docs / "kayak.md", k=3, include_self=True)
        assert similar[0].path.endswith("kayak.md")
        # another process refits the calibration: the open engine reads the new fit
        fits = {"text": {"model": eng.config.model_key("text"), "lo": 0.2, "vectors": 999}}
        (index / "calibration.json").write_text(json.dumps(fits))
        assert eng.calibration()["text"][0] == 0.2


def test_open_reader_follows_a_model_switch(tmp_path: Path) -> None:
    """Another process switches the text model: the open reader embeds its next queries
    with the new model (and reads its calibration), not the one it started with."""
    from tests.test_model_change import other_text_model

    docs = write_corpus(tmp_path / "docs")
    index = tmp_path / "index"
    assert run_cli("index", str(docs), "--index", str(index)).returncode == 0
    with Engine(index, readonly=True) as eng:
        old = eng.config.model_key("text")
        assert eng.search("Jupiter moons", k=1)[0].path.endswith("astronomy.rst")
        other = other_text_model(eng, tmp_path / "minilm-other")
        res = run_cli("index", str(docs), "--index", str(index), "--text", str(other))
        assert res.returncode == 0, res.stderr
        assert eng.search("Jupiter moons", k=1)[0].path.endswith("astronomy.rst")
        assert eng.config.model_key("text") == str(other) != old
        assert eng.status()["spaces"]["text"]["model"] == str(other)
        assert set(eng.ranker().models.values()) >= {str(other)}
