"""A model switch decodes images and media again: there, as in a first indexing, a decoder
that hangs is stopped by the time limit and one that kills the process is blamed on the next
run, and a long file is embedded part by part (issue 10, item 3)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from searchengine import Engine
from searchengine import reembed as reembed_module
from searchengine.inflight import CRASH_REASON
from searchengine.store.catalog import file_vectors, files
from tests.test_bad_files import run_python
from tests.test_crash_cli import perturbed_checkpoint


def swatches(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True)
    for i, name in enumerate(names):
        Image.new("RGB", (40, 30), (40 * i % 256, 90, 200)).save(root / f"{name}.png")
    return root


def flags(test_models: dict[str, Path], checkpoint: Path) -> dict:
    return {"models": {"clip": str(test_models["clip_config"])},
            "clip_pretrained": str(checkpoint)}


def clip_models(eng: Engine) -> dict[str, str]:
    """Each image's model, from its whole-file vector."""
    with eng.catalog.engine.connect() as conn:
        rows = conn.execute(
            select(files.c.path, file_vectors.c.model)
            .join(file_vectors, file_vectors.c.file_id == files.c.id)
            .where(file_vectors.c.space == "clip")
        ).all()
    return {Path(path).stem: model for path, model in rows}


def test_hanging_decoder_during_a_switch_keeps_that_file_old(tmp_path, test_models, monkeypatch):
    root = swatches(tmp_path / "img", ["a", "b", "hang"])
    index = tmp_path / "index"
    with Engine(index, create=True, **flags(test_models, test_models["clip_checkpoint"])) as eng:
        eng.index([root])
        old = eng.config.model_key("clip")
    release = threading.Event()
    real = reembed_module.decode_file

    def hanging(path: str, config):
        if Path(path).stem == "hang":
            release.wait(120)
        return real(path, config)

    monkeypatch.setenv("SEARCHENGINE_DECODE_TIMEOUT", "1.5")
    monkeypatch.setattr(reembed_module, "decode_file", hanging)
    other = perturbed_checkpoint(test_models["clip_checkpoint"], tmp_path / "other.pt")
    try:
        with Engine(index, **flags(test_models, other)) as eng:
            summary = eng.index([root])
            new = eng.config.model_key("clip")
            got = clip_models(eng)
    finally:
        release.set()
    assert summary.reembedded == 2
    assert any("hang.png" in n and "took too long" in n for n in summary.notes)
    assert got == {"a": new, "b": new, "hang": old}  # kept its old vectors, retried next run


CRASH_SCRIPT = """
import os, signal, sys
import searchengine.indexer as ix
import searchengine.reembed as re
real = re.decode_file
def decode(path, config):
    if path.endswith("bomb.png") and os.environ.get("BOOM"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, config)
re.decode_file = decode
ix.decode_file = decode
from searchengine.cli import main
main(sys.argv[1:])
"""


def test_file_that_crashes_a_switch_keeps_its_old_vectors(tmp_path, test_models):
    """The file in flight at the crash is decoded first in a child on the next run: it
    crashes there, so it keeps its old vectors (a re-embedding never costs a file its
    entry); the other files switch."""
    root = swatches(tmp_path / "img", ["a", "b", "bomb"])
    index = tmp_path / "index"
    with Engine(index, create=True, **flags(test_models, test_models["clip_checkpoint"])) as eng:
        eng.index([root])
        old = eng.config.model_key("clip")
    other = perturbed_checkpoint(test_models["clip_checkpoint"], tmp_path / "other.pt")
    args = ("index", str(root), "--index", str(index), "--json",
            "--clip", str(test_models["clip_config"]), "--clip-pretrained", str(other))
    first = run_python(CRASH_SCRIPT, *args, env={"BOOM": "1"})
    assert first.returncode == -9, first.stderr[-2000:]
    second = run_python(CRASH_SCRIPT, *args, env={"BOOM": "1"})
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout)
    assert any("bomb.png" in n and CRASH_REASON in n for n in summary["notes"])
    with Engine(index, readonly=True) as eng:
        states = {Path(r.path).stem: r.state for r in eng.catalog.all_files()}
        assert states == {"a": "indexed", "b": "indexed", "bomb": "indexed"}
        new = eng.config.model_key("clip")
        assert clip_models(eng) == {"a": new, "b": new, "bomb": old}
        assert eng.search("bomb", k=1)[0].path.endswith("bomb.png")  # still found
    third = run_python(CRASH_SCRIPT, *args)  # no longer crashing: it switches too
    assert third.returncode == 0, third.stderr[-2000:]
    with Engine(index, readonly=True) as eng:
        assert set(clip_models(eng).values()) == {new}
