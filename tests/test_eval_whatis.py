"""The manpages-whatis evaluation set: descriptions as queries, pages without NAME, overlap."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import eval_retrieval as ev  # noqa: E402
import eval_whatis as ew  # noqa: E402
import man_text as mt  # noqa: E402

PAGES = {
    "man1/cp.1": ("cp", "copy files and directories", "Copy SOURCE to DEST, or many to DIRECTORY."),
    "man2/fork.2": (
        "fork",
        "create a child process",
        "It makes a new process by duplicating the calling one; both run on from the call.",
    ),
    "man2/clone.2": (
        "clone, __clone2, clone3",
        "create a child process",
        "Like fork, but the caller decides what the new task shares with it: memory, files.",
    ),
    "man3/sin.3": ("sin, sinf, sinl", "sine function.", "These functions return the sine of x."),
    "man1/intro.1": ("intro", "introduction", "Section 1 of the manual describes commands."),
}


def roff(names: str, what: str, body: str) -> str:
    return (
        f'.TH X 1 2023-01-01 "Linux man-pages 6.03"\n.SH NAME\n{names} \\- {what}\n'
        f".SH DESCRIPTION\n{body}\n"
    )


@pytest.fixture
def pages() -> dict[str, str]:
    out = {f"{k}.txt": mt.roff_to_text(roff(*v)) for k, v in PAGES.items()}
    out["man7/broken.7.txt"] = "DESCRIPTION\nA page that lost its NAME section.\n"
    return out


def test_whatis_line_and_cut(pages: dict[str, str]) -> None:
    assert ew.whatis(pages["man1/cp.1.txt"]) == ("cp", "copy files and directories")
    assert ew.whatis(pages["man3/sin.3.txt"]) == ("sin, sinf, sinl", "sine function")
    assert ew.whatis(pages["man7/broken.7.txt"]) is None
    assert ew.whatis("NAME\nno dash here\n\nDESCRIPTION\nx\n") is None
    cut = ew.cut_name(pages["man2/clone.2.txt"])
    assert cut.startswith("DESCRIPTION\n") and "clone3" not in cut and "child" not in cut
    assert ew.cut_name("DESCRIPTION\nno name\n") == "DESCRIPTION\nno name\n"


def test_overlap_counts_content_words_by_stem() -> None:
    # copy, files, directories -> copy and DIRECTORY found, files not: 2 of 3
    assert ew.content_words("copy files and directories") == ["copy", "files", "direc"]
    assert ew.overlap("copy files and directories", "Copy it to DIRECTORY") == pytest.approx(2 / 3)
    assert ew.overlap("the of and", "anything") == 0.0
    assert ew.overlap("sine function", "these functions return the sine") == 1.0


def test_builder_hides_the_query_and_keeps_overlap_low(pages: dict[str, str]) -> None:
    built = ew.build_whatis_set(pages, n_corpus=100, n_queries=100, seed=3)
    assert sorted(built.texts) == ["0001.txt", "0002.txt", "0003.txt", "0004.txt", "0005.txt"]
    asked = dict(built.queries)
    # "introduction" has one content word: not asked; a shared description names both pages
    assert sorted(asked) == [
        "copy files and directories",
        "create a child process",
        "sine function",
    ]
    assert len(asked["create a child process"]) == 2
    for query, relevant in built.queries:
        for key in built.texts:
            flat = " ".join(built.texts[key].split()).lower()
            assert query.lower() not in flat  # never verbatim in any indexed page
            assert not flat.startswith("name")
        assert built.overlaps[query] == pytest.approx(
            sum(ew.overlap(query, built.texts[k]) for k in relevant) / len(relevant)
        )
    # fork's page shares "process" only, clone's nothing: (1/3 + 0) / 2
    assert built.overlaps["create a child process"] == pytest.approx(1 / 6)
    low = [q for q, _ in built.low_overlap()]
    assert low == ["create a child process"]
    assert (
        "1 queries share at most 0.5" in built.notes[1]
        and "0 queries occur verbatim" in (built.notes[1])
    )
    again = ew.build_whatis_set(pages, n_corpus=100, n_queries=100, seed=3)
    assert again.texts == built.texts and again.queries == built.queries  # seeded


def test_whatis_end_to_end(tmp_path: Path, pages: dict[str, str]) -> None:
    folder = tmp_path / "manpages"
    for key, text in pages.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text(text, "utf-8")
    modes = (ev.FUSED, ev.Mode("bm25 only", vector_weight=0.0, diverse=False, drop_zero=True))
    report = ev.evaluate_whatis(folder, tmp_path / "eval", 10, 10, seed=3, modes=modes)
    rows = [(r.set, r.mode, r.summary.queries) for r in report.rows]
    assert rows == [
        ("manpages-whatis", "fused", 3),
        ("manpages-whatis (overlap <= 0.5)", "fused", 1),
        ("manpages-whatis", "bm25 only", 3),
        ("manpages-whatis (overlap <= 0.5)", "bm25 only", 1),
        ("manpages-whatis", "random (chance)", 3),
    ]
    assert report.rows[0].summary.recall[10] == 1.0  # five pages: every target is on the page
    pages_json = json.loads((tmp_path / "eval" / "manpages-whatis" / "pages.json").read_text())
    fused = pages_json["fused"]
    assert len(fused) == 3 and all(len(p["scores"]) == len(p["gains"]) for p in fused)
    assert [p["relevant"] for p in fused] == [1, 2, 1]
    assert all(sum(p["gains"]) == p["relevant"] for p in fused)
    staged = sorted(p.name for p in (tmp_path / "eval" / "manpages-whatis" / "corpus").iterdir())
    assert staged == ["0001.txt", "0002.txt", "0003.txt", "0004.txt", "0005.txt"]
