"""Reading what is inside files: segment places (catalog format 4), PDFs page by page, OCR
of images, scanned pages and video frames, subtitle tracks."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from searchengine import Engine
from searchengine.store.schema import SCHEMA_VERSION
from tests.conftest import write_corpus


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("fmt4")
    docs = write_corpus(base / "docs")
    with Engine(base / "index", create=True) as eng:
        eng.index([docs])
    return docs, base / "index"


def test_format_3_index_gains_segment_places_and_answers(docs_index, tmp_path: Path) -> None:
    """A catalog of format 3 (segments without `loc`) migrates on open and answers as before."""
    _, index = docs_index
    with Engine(index, readonly=True) as eng:
        before = [(h.path, h.score) for h in eng.search("planets and moons", k=3)]
    old = tmp_path / "v3"
    shutil.copytree(index, old)
    with sqlite3.connect(old / "catalog.db") as db:
        db.execute("ALTER TABLE segments DROP COLUMN loc")
        db.execute("PRAGMA user_version = 3")
    with Engine(old, readonly=True) as eng:  # a reader migrates a writable old index
        after = [(h.path, h.score) for h in eng.search("planets and moons", k=3)]
        hits = eng.search("Jupiter", k=1)
        assert hits and "page" not in hits[0].to_json()["segments"][0]
    assert [p for p, _ in after] == [p for p, _ in before]
    assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-4)
    with sqlite3.connect(old / "catalog.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        cols = [r[1] for r in db.execute("PRAGMA table_info(segments)")]
        assert "loc" in cols
        assert db.execute("SELECT count(*) FROM segments WHERE loc IS NOT NULL").fetchone()[0] == 0
