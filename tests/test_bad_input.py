"""Bad input gets a recorded state and reason; the run completes; user mistakes get one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from searchengine import Engine
from searchengine import indexer as indexer_module
from tests.conftest import run_cli


def states(eng: Engine) -> dict[str, tuple[str, str | None]]:
    return {Path(r.path).name: (r.state, r.reason) for r in eng.catalog.all_files()}


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    root = tmp_path / "messy"
    root.mkdir()
    (root / "good.txt").write_text("A perfectly normal note about lighthouses.")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (root / "latin1.txt").write_bytes(
        "Crème brûlée à la française, très déliçieux".encode("cp1252")
    )
    (root / "broken-utf8.md").write_bytes(b"valid start \xff\xfe\xfd then more words about owls")
    (root / "empty.txt").write_bytes(b"")
    (root / "unreadable.txt").write_text("you cannot read me")
    os.chmod(root / "unreadable.txt", 0)
    with open(root / "huge.txt", "w") as fh:  # 50 MB of text
        line = "the same line of text repeated to make a very large file\n"
        fh.write(line * (50_000_000 // len(line) + 1))
    (root / "vanishing.txt").write_text("this file is deleted between walk and read")
    (root / "fake.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (root / "archive.txt").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    name = os.fsencode(str(root)) + b"/caf\xe9-\xff.txt"  # not valid UTF-8
    with open(name, "wb") as fh:
        fh.write(b"notes from the cafe about espresso machines")
    return root


def test_bad_files_are_recorded_and_the_run_completes(messy, index_dir, monkeypatch):
    real_decode = indexer_module.decode_file

    def decode(path: str, config):
        if path.endswith("unreadable.txt"):  # root ignores mode bits: deny like a real EACCES
            raise PermissionError(13, "Permission denied", path)
        if path.endswith("vanishing.txt"):
            os.unlink(path)
        return real_decode(path, config)

    monkeypatch.setattr(indexer_module, "decode_file", decode)
    with Engine(index_dir, create=True) as eng:
        summary = eng.index([messy])
        got = states(eng)
        status = eng.status()
        assert got["good.txt"][0] == "indexed"
        assert got["latin1.txt"][0] == "indexed"
        assert got["broken-utf8.md"][0] == "indexed"
        assert got["binary.txt"] == ("skipped", got["binary.txt"][1])
        assert "binary" in got["binary.txt"][1]
        assert got["empty.txt"] == ("skipped", "empty file")
        assert got["unreadable.txt"] == ("failed", "permission denied")
        assert got["huge.txt"][0] == "skipped" and "MB" in got["huge.txt"][1]
        assert got["vanishing.txt"][0] == "failed" and "vanished" in got["vanishing.txt"][1]
        assert got["fake.pdf"][0] == "failed" and "PDF" in got["fake.pdf"][1]
        assert got["archive.txt"][0] == "skipped"
        odd = [n for n in got if n.startswith("caf")]
        assert len(odd) == 1 and got[odd[0]][0] == "indexed" and "\ufffd" in odd[0]
        assert summary.failed == 3 and summary.skipped == 4
        reasons = {Path(f["path"]).name: f["reason"] for f in status["failed"]}
        assert reasons["unreadable.txt"] == "permission denied"
        assert {Path(f["path"]).name for f in status["skipped"]} >= {"empty.txt", "huge.txt"}
        hit = eng.search("crème brûlée dessert", k=1)[0]
        assert hit.path.endswith("latin1.txt") and "brûlée" in hit.segments[0].text
        espresso = eng.search("espresso machines", k=1)[0]
        assert Path(espresso.path).name == odd[0]
        again = eng.index([messy])  # failures are remembered, not retried while unchanged
        assert again.failed == 0 and again.deleted == 1  # vanishing.txt is gone now


def test_cli_run_over_bad_files_exits_zero(messy, index_dir):
    res = run_cli("index", str(messy), "--index", str(index_dir))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("status", "--index", str(index_dir))
    assert res.returncode == 0 and "empty file" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["index", "/no/such/folder"], "no such file or folder"),
        (["search", "   "], "query is empty"),
        (["search", "owls"], "no index at"),
        (["status"], "no index at"),
        (["search", "owls", "--type", "sculpture"], "unknown type"),
    ],
)
def test_user_mistakes_give_one_clear_line(tmp_path, corpus, args, message):
    index = tmp_path / "fresh-index"
    if "sculpture" in args:
        assert run_cli("index", str(corpus), "--index", str(index)).returncode == 0
    res = run_cli(*args, "--index", str(index))
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
