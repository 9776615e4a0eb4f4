"""Change detection: unchanged trees embed nothing, edits re-embed alone, moves keep vectors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from searchengine import Engine
from searchengine.encoders import text as text_encoder


@pytest.fixture
def embed_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts items sent to the text model, to prove what was (not) re-embedded."""
    calls: list[int] = []
    original = text_encoder.TextEncoder.embed_items

    def counting(self, payloads):
        calls.append(len(payloads))
        return original(self, payloads)

    monkeypatch.setattr(text_encoder.TextEncoder, "embed_items", counting)
    return calls


def segment_ids(eng: Engine, name: str) -> list[int]:
    from sqlalchemy import select

    from searchengine.store.catalog import files, segments

    with eng.catalog.engine.connect() as conn:
        return list(
            conn.execute(
                select(segments.c.id)
                .join(files, files.c.id == segments.c.file_id)
                .where(files.c.path.like(f"%/{name}"))
            ).scalars()
        )


def test_second_run_over_unchanged_tree_embeds_nothing(corpus, index_dir, embed_calls):
    with Engine(index_dir, create=True) as eng:
        eng.index([corpus])
        assert sum(embed_calls) >= 6
        embed_calls.clear()
        again = eng.index([corpus])
    assert again.unchanged == 6
    assert (again.added, again.changed, again.moved, again.deleted) == (0, 0, 0, 0)
    assert embed_calls == []


def test_edited_file_is_re_embedded_alone(corpus, index_dir, embed_calls):
    with Engine(index_dir, create=True) as eng:
        eng.index([corpus])
        embed_calls.clear()
        (corpus / "garden.md").write_text("Notes on repairing a bicycle puncture with a patch kit.")
        summary = eng.index([corpus])
        assert (summary.changed, summary.unchanged, summary.added) == (1, 5, 0)
        assert sum(embed_calls) == 1
        top = eng.search("fix a flat tyre", k=1)[0]
        assert top.path.endswith("garden.md")
        assert all(
            "tomatoes" not in (s.text or "")
            for h in eng.search("tomatoes", k=6)
            for s in h.segments
        )


def test_touched_but_identical_file_is_not_re_embedded(corpus, index_dir, embed_calls):
    with Engine(index_dir, create=True) as eng:
        eng.index([corpus])
        embed_calls.clear()
        path = corpus / "budget.txt"
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
        summary = eng.index([corpus])
        assert summary.unchanged == 6 and summary.changed == 0
        assert embed_calls == []


def test_deleted_file_disappears_from_results(corpus, index_dir):
    with Engine(index_dir, create=True) as eng:
        eng.index([corpus])
        (corpus / "astronomy.rst").unlink()
        summary = eng.index([corpus])
        assert summary.deleted == 1
        assert all(not h.path.endswith("astronomy.rst") for h in eng.search("Jupiter", k=10))
        assert eng.vectors("text").ids().size == eng.status()["spaces"]["text"]["vectors"]


def test_moved_and_renamed_file_keeps_its_vectors(corpus, index_dir, embed_calls):
    with Engine(index_dir, create=True) as eng:
        eng.index([corpus])
        before = segment_ids(eng, "recipe.html")
        embed_calls.clear()
        (corpus / "kitchen").mkdir()
        shutil.move(corpus / "recipe.html", corpus / "kitchen" / "pancakes.html")
        summary = eng.index([corpus])
        assert summary.moved == 1 and summary.added == 0 and summary.deleted == 0
        assert summary.moves[0][1].endswith("kitchen/pancakes.html")
        assert embed_calls == []
        assert segment_ids(eng, "pancakes.html") == before
        top = eng.search("pancake batter", k=1)[0]
        assert top.path.endswith("kitchen/pancakes.html")


def test_exact_duplicate_shares_vectors_without_embedding(corpus, index_dir, embed_calls):
    with Engine(index_dir, create=True) as eng:
        eng.index([corpus])
        embed_calls.clear()
        shutil.copy(corpus / "budget.txt", corpus / "budget-copy.txt")
        summary = eng.index([corpus])
        assert summary.added == 1 and embed_calls == []
        paths = {Path(h.path).name for h in eng.search("quarterly budget", k=2)}
        assert paths == {"budget.txt", "budget-copy.txt"}


def test_junk_hidden_ignored_and_symlink_loops_are_skipped(tmp_path, index_dir):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "keep.txt").write_text("a note about sailing boats")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.txt").write_text("hidden sailing")
    (root / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / "._keep.txt").write_bytes(b"\x00resource fork")
    (root / "sub" / "draft.tmp").write_text("temporary sailing draft")
    (root / "sub" / "real.txt").write_text("sailing across the ocean")
    (root / ".searchignore").write_text("*.tmp\n")
    os.symlink(root, root / "sub" / "loop")
    with Engine(index_dir, create=True) as eng:
        summary = eng.index([root])
        names = sorted(
            Path(f["path"] if isinstance(f, dict) else f).name
            for f in [r.path for r in eng.catalog.all_files()]
        )
    assert names == ["keep.txt", "real.txt"]
    assert summary.added == 2


def test_index_folder_inside_the_tree_is_not_indexed(corpus):
    inside = corpus / "myindex"
    with Engine(inside, create=True) as eng:
        eng.index([corpus])
        assert all("myindex" not in r.path for r in eng.catalog.all_files())
