"""The manpages-seealso evaluation: roff to text, SEE ALSO graph, graded metrics, a tiny run."""

from __future__ import annotations

import gzip
import json
import math
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Imported by name (not tests.conftest.load_script) so that these scripts and the ones they
# import share one module each: one EvalError class, dataclasses that resolve their types.
sys.path.insert(0, str(REPO / "scripts"))
import eval_similar as es  # noqa: E402
import evalkit as kit  # noqa: E402
import fetch_samples as fs  # noqa: E402
import man_text as mt  # noqa: E402

PAGE = r""".\" Copyright (c) 1992 Somebody
.\" SPDX-License-Identifier: Linux-man-pages-copyleft
.TH CHMOD 2 2023-02-05 "Linux man-pages 6.03"
.SH NAME
chmod, fchmod \- change permissions of a file
.SH SYNOPSIS
.nf
.B #include <sys/stat.h>
.PP
.BI "int chmod(const char *" pathname ", mode_t " mode );
.fi
.SH DESCRIPTION
The
.BR chmod ()
system call changes a file's mode bits \(em the \fBfile\fP permission bits
plus the set-user-ID, set-group-ID, and sticky bits.
It is like \fIfchmod\fR(2) but takes a \[aq]path\[aq].
.TP
.B S_ISUID
set-user-ID (see
.BR execve (2))
.TP
.BR S_IRUSR " (00400)"
read by owner
.SS Errors in a table
.TS
allbox;
lb lb
l l.
Code\tMeaning
_
EPERM\tT{
.BR chmod ()
is not allowed
T}
.TE
.SH "SEE ALSO"
.BR chmod (1),
.BR chown (2),
.BR execve (2),
.BR open (2),
.BR stat (2),
.BR symlink (7)
""".replace("\\t", "\t")


# ---- roff to text --------------------------------------------------------------------------


def test_roff_to_text_reads_like_the_page() -> None:
    text = mt.roff_to_text(PAGE)
    lines = text.splitlines()
    assert lines[0] == "NAME"  # comments and .TH print nothing
    assert "chmod, fchmod - change permissions of a file" in lines
    assert "SYNOPSIS" in lines and "DESCRIPTION" in lines and "SEE ALSO" in lines
    # no-fill block line by line, font alternation without spaces
    assert "#include <sys/stat.h>" in lines
    assert "int chmod(const char *pathname, mode_t mode);" in lines
    # filled text joins into one paragraph line; escapes become characters
    assert (
        "The chmod() system call changes a file's mode bits \u2014 the file permission bits "
        "plus the set-user-ID, set-group-ID, and sticky bits. It is like fchmod(2) but "
        "takes a 'path'."
    ) in lines
    # .TP: the tag on its own line, its body after
    i = lines.index("S_ISUID")
    assert lines[i + 1] == "set-user-ID (see execve(2))"
    assert "S_IRUSR (00400)" in lines
    assert "Errors in a table" in lines  # .SS heading
    assert "Code Meaning" in lines  # tbl: format lines dropped, one row per line
    assert "EPERM chmod() is not allowed" in lines
    assert lines[-1] == "chmod(1), chown(2), execve(2), open(2), stat(2), symlink(7)"
    for leftover in ("\\f", "\\(", "\\[", ".BR", ".TP", "T{", "allbox", "Copyright", "\\-"):
        assert leftover not in text


def test_so_stub_is_skipped_and_names_its_target() -> None:
    stub = '.\\" a comment\n.so man2/chmod.2\n'
    assert mt.roff_to_text(stub) is None
    assert mt.so_target(stub) == "chmod.2"
    assert mt.so_target(".so man3/foo.3.gz\n") == "foo.3"
    assert mt.so_target(PAGE) is None  # a real page is not a stub
    assert mt.so_target(".so man2/a.2\n.so man2/b.2\n") is None


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (r"a \fBbold\fP and \f[I]italic\f[] \fR.", "a bold and italic ."),
        (r"dash\-dash \(en \[em] \(aq\(dq \e \\", "dash-dash \u2013 \u2014 '\" \\ \\"),
        (r"\*(lqquoted\*(rq \(:a \['e] \[u00E9]", "\u201cquoted\u201d \u00e4 \u00e9 \u00e9"),
        (r"no\&break\ space\~tilde\c", "nobreak space tilde"),
        (r"size \s-1small\s0 \s+2big\s[0] \w'abc'w", "size small big w"),
        (r"text \" a comment", "text "),
        (r"\(bu item \(xx unknown", "\u2022 item  unknown"),
    ],
)
def test_unescape(line: str, text: str) -> None:
    assert mt.unescape(line) == text


def test_macro_args_quotes() -> None:
    assert mt.macro_args('"int chmod(const char *" pathname ", mode_t " mode );') == [
        "int chmod(const char *",
        "pathname",
        ", mode_t ",
        "mode",
        ");",
    ]
    assert mt.macro_args('"say ""hi""" b') == ['say "hi"', "b"]
    assert mt.macro_args(r"a\ b c \" comment") == [r"a\ b", "c"]


def test_line_continuation_and_skipped_blocks() -> None:
    src = ".de XX\n.B never\n..\n.if t \\{\\\n.B nor\n.\\}\n.nf\nint f(int a, \\\nint b);\n.fi\n"
    assert mt.roff_to_text(src) == "int f(int a, int b);\n"


# ---- SEE ALSO ------------------------------------------------------------------------------


def test_see_also_parses_only_its_section() -> None:
    text = mt.roff_to_text(PAGE)
    assert mt.see_also(text) == [
        ("chmod", "1"),
        ("chown", "2"),
        ("execve", "2"),  # also cited in DESCRIPTION: only SEE ALSO counts
        ("open", "2"),
        ("stat", "2"),
        ("symlink", "7"),
    ]
    written = (
        "NAME\nfoo - a page\n\nSEE ALSO\nbar(3), ld.so(8), bar(3),\npthread_attr_init(3);"
        " see also the web\n\nCOLOPHON\nmore(1)\n"
    )
    assert mt.see_also(written) == [("bar", "3"), ("ld.so", "8"), ("pthread_attr_init", "3")]
    assert mt.see_also("NAME\nno references here(2)\n") == []


def test_cut_see_also() -> None:
    text = "NAME\nfoo\n\nSEE ALSO\nbar(3), baz(2)\n\nCOLOPHON\nkept\n"
    assert mt.cut_see_also(text) == "NAME\nfoo\n\nCOLOPHON\nkept\n"
    assert mt.cut_see_also(mt.roff_to_text(PAGE)).rstrip().endswith("EPERM chmod() is not allowed")
    assert mt.see_also(mt.cut_see_also(mt.roff_to_text(PAGE))) == []


def test_build_see_also_resolves_aliases(tmp_path: Path) -> None:
    pages = {
        "pkg/man2/chmod.2.txt": "NAME\nchmod\n\nSEE ALSO\nfchmod(2), chown(2), ls(1), chmod(2)\n",
        "pkg/man2/chown.2.txt": "NAME\nchown\n\nSEE ALSO\nchmod(2)\n",
        "pkg/man7/none.7.txt": "NAME\nnone\n",
        "pkg/COPYRIGHT": "not a page",
    }
    for rel, body in pages.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body)
    graph = mt.build_see_also(tmp_path, {"fchmod.2": "chmod.2", "lchown.2": "chown.2"})
    assert graph["pages"] == {
        # fchmod is chmod itself (an alias), chmod(2) too: dropped; ls(1) kept (not here)
        "chmod.2": {"path": "pkg/man2/chmod.2.txt", "see_also": ["chown.2", "ls.1"]},
        "chown.2": {"path": "pkg/man2/chown.2.txt", "see_also": ["chmod.2"]},
        "none.7": {"path": "pkg/man7/none.7.txt", "see_also": []},
    }
    assert mt.resolve("a.1", {"a.1": "b.1", "b.1": "a.1"}) == "b.1"  # a cycle stops


def test_fetch_copies_man_pages_and_records_aliases(tmp_path: Path) -> None:
    """The `man` pick of fetch_samples.py on a package-like tree (no download)."""
    man = tmp_path / "pkg" / "usr" / "share" / "man"
    (man / "man2").mkdir(parents=True)
    (man / "man3").mkdir()
    with gzip.open(man / "man2" / "chmod.2.gz", "wt") as fh:
        fh.write(PAGE)
    with gzip.open(man / "man2" / "fchmodat.2.gz", "wt") as fh:
        fh.write(".so man2/chmod.2\n")
    os.symlink("../man2/chmod.2.gz", man / "man3" / "lchmod.3.gz")
    dest = tmp_path / "out" / "manpages"
    aliases: dict[str, str] = {}
    pick = fs.Pick("usr/share/man", ("man*/*.gz",), man=True)
    assert fs.copy_picks(tmp_path / "pkg", (pick,), dest, aliases) == 1
    assert aliases == {"fchmodat.2": "chmod.2", "lchmod.3": "chmod.2"}
    assert (dest / "man2" / "chmod.2.txt").read_text() == mt.roff_to_text(PAGE)
    assert not (dest / "man3").exists()
    graph = fs.write_see_also(tmp_path / "out", aliases)
    assert graph["pages"]["chmod.2"]["path"] == "manpages/man2/chmod.2.txt"
    on_disk = json.loads((tmp_path / "out" / "see_also.json").read_text())
    assert on_disk["aliases"] == aliases and "chmod.2" in on_disk["pages"]


# ---- metrics, hand-computed ----------------------------------------------------------------


def test_ndcg_graded() -> None:
    gains = {"a": 2.0, "b": 1.0, "c": 1.0}
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert kit.ndcg_at(["a", "b", "c", "x", "y"], gains, 5) == pytest.approx(1.0)
    assert kit.ndcg_at(["a", "c", "b"], gains, 5) == pytest.approx(1.0)  # equal gains swap
    assert kit.ndcg_at(["x", "a", "y", "b"], gains, 5) == pytest.approx(
        (2 / math.log2(3) + 1 / math.log2(5)) / ideal
    )
    assert kit.ndcg_at(["b", "a"], gains, 5) == pytest.approx((1 + 2 / math.log2(3)) / ideal)
    assert kit.ndcg_at(["x", "y", "z", "w", "v", "a"], gains, 5) == 0.0  # a is 6th
    # the ideal is cut at k too: five mutual pages fill a perfect top 5 of six
    six = {c: 2.0 for c in "abcdef"}
    assert kit.ndcg_at(list("abcde"), six, 5) == pytest.approx(1.0)
    assert kit.ndcg_at([], gains, 5) == 0.0
    with pytest.raises(ValueError):
        kit.ndcg_at(["a"], {}, 5)
    with pytest.raises(ValueError):
        kit.ndcg_at(["a"], gains, 0)


def test_recall_over_related_present() -> None:
    related = ["a", "b", "c", "d"]
    ranked = ["x", "a", "y", "b"] + [f"z{i}" for i in range(6)] + ["c"]
    assert kit.recall_at(ranked, related, 10) == 0.5  # c is 11th
    assert kit.recall_at(ranked, related, 11) == 0.75


def test_relatedness_gains() -> None:
    cites = {"a": ["b", "c", "a", "out"], "b": ["a"], "c": [], "d": ["c"]}
    rel = es.relatedness(cites)
    assert rel == {
        "a": {"b": 2.0, "c": 1.0},
        "b": {"a": 2.0},
        "c": {"a": 1.0, "d": 1.0},
        "d": {"c": 1.0},
    }


def test_score_means_per_query() -> None:
    queries = {"q1": {"a": 2.0, "b": 1.0, "c": 1.0}, "q2": {"d": 1.0, "e": 1.0, "f": 1.0}}
    ranked = {"q1": ["a", "b", "c"], "q2": ["x"] * 10 + ["d"]}
    ndcg, recall = es.score("test", ranked, queries)
    assert ndcg == pytest.approx(0.5) and recall == pytest.approx(0.5)


def test_cosine_rankings_drop_the_query_and_its_copies() -> None:
    import numpy as np

    keys = ["a", "b", "c", "d"]
    m = np.array([[1, 0], [0.6, 0.8], [1, 0], [0, 1]], dtype=np.float32)
    ranked, _ = es.cosine_rankings(keys, m, ["a", "d"], {"a": {"a", "c"}, "d": {"d"}})
    assert ranked["a"] == ["b", "d"]
    assert ranked["d"] == ["b", "a", "c"]


# ---- the set and a tiny end-to-end run -----------------------------------------------------

TOPICS = {
    # name.section: (what the page says, the pages it cites)
    "open.2": (
        "open a file and return a file descriptor; flags for reading and writing files",
        ["read.2", "write.2", "close.2"],
    ),
    "read.2": ("read bytes from a file descriptor into a buffer", ["open.2", "write.2"]),
    "write.2": ("write bytes from a buffer to a file descriptor", ["open.2", "read.2"]),
    "close.2": ("close a file descriptor so it can be reused", ["open.2"]),
    "sin.3": ("sine function of an angle in radians, trigonometry", ["cos.3", "tan.3"]),
    "cos.3": ("cosine function of an angle in radians, trigonometry", ["sin.3", "tan.3"]),
    "tan.3": ("tangent function of an angle in radians, trigonometry", ["sin.3", "cos.3"]),
    "printf.3": ("formatted output conversion to standard output", ["puts.3"]),
    "puts.3": ("output of characters and strings", []),
}


def write_man_set(root: Path) -> Path:
    folder = root / "manpages"
    for key, (body, cites) in TOPICS.items():
        name, section = key.split(".")
        page = folder / "pkg" / f"man{section}" / f"{key}.txt"
        page.parent.mkdir(parents=True, exist_ok=True)
        see = ", ".join(f"{c.split('.')[0]}({c.split('.')[1]})" for c in cites)
        text = f"NAME\n{name} - {body}\n\nDESCRIPTION\n" + f"The {name} call: {body}. " * 3
        page.write_text(text + (f"\n\nSEE ALSO\n{see}\n" if cites else "\n"))
    graph = mt.build_see_also(folder, {})
    (folder / "see_also.json").write_text(json.dumps(graph))
    return folder


def test_build_set_keeps_related_pages_with_their_queries(tmp_path: Path) -> None:
    folder = write_man_set(tmp_path)
    full = es.build_seealso_set(folder, 100, 100, seed=3)
    assert len(full.files) == len(TOPICS)
    assert set(full.files) == {f"man{k.split('.')[1]}/{k}.txt" for k in TOPICS}
    # open: read 2, write 2, close 2 (all mutual); sin: cos 2, tan 2 -> fewer than 3
    assert full.queries == {
        "man2/open.2.txt": {
            "man2/close.2.txt": 2.0,
            "man2/read.2.txt": 2.0,
            "man2/write.2.txt": 2.0,
        },
    }
    small = es.build_seealso_set(folder, 6, 100, seed=0)  # room for open.2 and its 3 pages
    assert len(small.files) == 6
    assert set(small.queries) == {"man2/open.2.txt"}
    assert set(small.queries["man2/open.2.txt"]) <= set(small.files)


def test_missing_sidecar_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(es.EvalError, match="fetch_samples.py manpages"):
        es.build_seealso_set(tmp_path, 10, 10, 0)


def test_similar_eval_end_to_end(tmp_path: Path) -> None:
    folder = write_man_set(tmp_path)
    labelled = es.build_seealso_set(folder, 100, 100, seed=0)
    report = es.evaluate_similar(labelled, tmp_path / "eval", seed=0)
    modes = [r.mode for r in report.rows]
    assert modes == [
        "similar -k 10 (engine)",
        "similar -k 100 (engine)",
        es.DIRECT,
        es.CHUNK_MEAN,
        "random (chance)",
    ]
    for row in report.rows:
        assert row.queries == 1
        assert 0.0 <= row.ndcg <= 1.0 and 0.0 <= row.recall <= 1.0
    by_mode = {r.mode: r for r in report.rows}
    # three file-descriptor pages among sine, printf...: the real model finds all three
    assert by_mode[es.DIRECT].recall == 1.0 and by_mode[es.DIRECT].ndcg == pytest.approx(1.0)
    assert by_mode[es.CHUNK_MEAN].recall == 1.0
    assert any(n.startswith("target (engine >= 0.95") for n in report.notes)
    assert any("9 files indexed" in n for n in report.notes)
    table = es.markdown_table(report.rows)
    assert table.count("\n") == 1 + len(report.rows)
    assert f"| manpages-seealso | {es.DIRECT} | 1 | 1.000 | 1.000 | 1.00 | 1.00 |" in table
    # a second run reuses the cached direct vectors
    again = es.evaluate_similar(labelled, tmp_path / "eval", seed=0)
    assert any("0 pages embedded in this run" in n for n in again.notes)
    assert [r.ndcg for r in again.rows] == [r.ndcg for r in report.rows]


def test_cut_variant_indexes_pages_without_see_also(tmp_path: Path) -> None:
    folder = write_man_set(tmp_path)
    plain = es.build_seealso_set(folder, 100, 100, seed=0)
    cut = es.build_seealso_set(folder, 100, 100, seed=0, cut=True)
    assert cut.name == "manpages-seealso-cut" and plain.name == "manpages-seealso"
    assert cut.queries == plain.queries and cut.files == plain.files
    report = es.evaluate_similar(cut, tmp_path / "eval", seed=0)
    staged = sorted((tmp_path / "eval" / "manpages-seealso-cut" / "corpus").rglob("*.txt"))
    assert len(staged) == len(TOPICS)
    assert not any("SEE ALSO" in p.read_text() for p in staged)
    assert "SEE ALSO" in (folder / "pkg" / "man2" / "open.2.txt").read_text()  # source intact
    assert report.name == "manpages-seealso-cut"
    assert "| manpages-seealso-cut | similar -k 10 (engine) | 1 |" in es.markdown_table(
        report.rows, report.name
    )
