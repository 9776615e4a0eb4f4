"""SIGKILL of the `index` command while it streams a long recording, switches a model, and
copies a duplicate: the index opens and answers right after, and the next run equals a
clean run over the same files (issue 10, item 9)."""

from __future__ import annotations

import hashlib
import shutil
import signal
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sqlalchemy import select

from searchengine import Engine
from searchengine.store.catalog import files, segments
from tests.conftest import run_cli, write_corpus

RATE = 16_000


def long_recording(path: Path, seconds: int = 200) -> Path:
    """A tone that changes pitch every 5 s: long enough to stream in three parts."""
    t = np.arange(seconds * RATE) / RATE
    pitch = 220.0 * (1 + (t // 5) % 7 / 4)
    pcm = (0.3 * np.sin(2 * np.pi * pitch * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())
    return path


def state(index: Path, root: Path, queries: list[str]) -> tuple:
    """What a user can observe of an index, with paths relative to its root: every file's
    state, every segment (space, kind, span, vector digest), and the answers to queries."""
    with Engine(index, readonly=True) as eng:
        with eng.catalog.engine.connect() as conn:
            rows = conn.execute(
                select(files.c.path, files.c.state, files.c.type).order_by(files.c.path)
            ).all()
            segs = conn.execute(
                select(
                    files.c.path, segments.c.space, segments.c.kind, segments.c.start,
                    segments.c.end, segments.c.model, segments.c.vector,
                ).join(files, files.c.id == segments.c.file_id)
            ).all()
        rel = {r.path: str(Path(r.path).relative_to(root)) for r in rows}
        file_rows = [(rel[r.path], r.state, r.type) for r in rows]
        seg_rows = sorted(
            (rel[s[0]], *s[1:5], s[5] is not None, _digest(s[6])) for s in segs
        )
        # by content: which of two identical copies stands for both follows catalog ids
        answers = [
            [(_content(h.path), round(h.score, 3)) for h in eng.search(q, k=5)]
            for q in queries
        ]
    return file_rows, seg_rows, answers


def _content(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]


def _digest(blob: bytes | None) -> str | None:
    if blob is None:
        return None
    rounded = np.round(np.frombuffer(blob, np.float16).astype(np.float32), 2)
    return hashlib.sha1(rounded.tobytes()).hexdigest()[:12]


def answers_now(index: Path, query: str) -> list[str]:
    """The half-built index opens read-only and answers (before any repair)."""
    res = run_cli("search", query, "--index", str(index), "--json")
    assert res.returncode == 0, res.stderr
    return res.stdout


def clean_index(root: Path, where: Path, *flags: str) -> Path:
    """An `index` run in this process (the same code as the command, without its start-up)."""
    options = dict(zip(flags[::2], flags[1::2], strict=True))
    models = {k[2:]: v for k, v in options.items() if k in ("--clip", "--clap", "--speech")}
    with Engine(where, create=True, models=models,
                clip_pretrained=options.get("--clip-pretrained")) as eng:
        assert eng.index([root]).failed == 0
    return where


def killed(root: Path, index: Path, crash_at: str, *flags: str) -> None:
    res = run_cli(
        "index", str(root), "--index", str(index), *flags,
        env={"SEARCHENGINE_CRASH_AT": crash_at},
    )
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr[-2000:])


def test_kill_while_streaming_a_long_recording(tmp_path, test_models):
    flags = ("--clap", str(test_models["clap"]), "--speech", "off")
    root = write_corpus(tmp_path / "media", {"notes.txt": "rehearsal notes for the choir"})
    long_recording(root / "rehearsal.wav")
    queries = ["a low hum", "choir rehearsal"]
    reference = state(clean_index(root, tmp_path / "clean", *flags), root, queries)
    assert sum(1 for s in reference[1] if s[1] == "clap") > 32  # streamed in three parts
    index = tmp_path / "index"
    killed(root, index, "stream-part:2", *flags)  # two parts embedded, none committed
    answers_now(index, "choir rehearsal")
    clean_index(root, index, *flags)
    assert state(index, root, queries) == reference


def coloured_images(root: Path, n: int = 40) -> Path:
    """More images than one re-embedding batch (32 files), each a different colour."""
    root.mkdir(parents=True)
    for i in range(n):
        colour = ((i * 53) % 256, (i * 97) % 256, (i * 31) % 256)
        Image.new("RGB", (40, 30), colour).save(root / f"swatch{i:02d}.png")
    (root / "readme.txt").write_text("colour swatches for the kitchen wall")
    return root


def perturbed_checkpoint(original: Path, out: Path) -> Path:
    state_dict = torch.load(original, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    torch.save(
        {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
         for k, v in state_dict.items()},
        out,
    )
    return out


def test_kill_during_a_model_switch(tmp_path, test_models):
    """Killed after 20 of 40 images were switched (each file is its own commit): old
    vectors stay, and the next run finishes the switch exactly as a clean index with the
    new model would be."""
    root = coloured_images(tmp_path / "swatches")
    config = str(test_models["clip_config"])
    old = ("--clip", config, "--clip-pretrained", str(test_models["clip_checkpoint"]))
    other = perturbed_checkpoint(test_models["clip_checkpoint"], tmp_path / "other.pt")
    new = ("--clip", config, "--clip-pretrained", str(other))
    queries = ["a red swatch", "kitchen wall"]
    reference = state(clean_index(root, tmp_path / "clean", *new), root, queries)
    index = clean_index(root, tmp_path / "index", *old)
    killed(root, index, "reembed-committed:20", *new)
    with Engine(index, readonly=True) as eng:
        in_use = eng.catalog.models_in_use("clip")
        hits = eng.search("a red swatch", k=40, types=["image"])
        key = eng.config.model_key("clip")
        with eng.catalog.engine.connect() as conn:
            made = conn.execute(
                select(segments.c.id, segments.c.model).where(segments.c.space == "clip")
            ).all()
        new_ids = {i for i, m in made if m == key}
        query = next(iter(eng.catalog.vector_map([made[0][0]]).values()))
        mixed, _ = eng.store.search("clip", query, 40)
        only_new, _ = eng.store.search("clip", query, 40, model=key)
    assert len(in_use) == 2 and len(new_ids) == 20  # really killed half-way
    assert len(hits) == 40  # every image still found (by a vector or by its name)
    # a query made by the new model is never scored against the old model's vectors
    assert {i for i, _ in mixed} - new_ids and {i for i, _ in only_new} == new_ids
    answers_now(index, "a red swatch")
    clean_index(root, index)  # no flags: the new model is stored in the index
    assert state(index, root, queries) == reference


def test_kill_while_copying_a_duplicate(tmp_path):
    root = write_corpus(tmp_path / "docs")
    index = clean_index(root, tmp_path / "index")
    for name in ("astronomy.rst", "garden.md", "code.py"):
        shutil.copy2(root / name, root / f"copy of {name}")
    queries = ["planets orbit the sun", "seedlings and compost"]
    reference = state(clean_index(root, tmp_path / "clean"), root, queries)
    killed(root, index, "duplicate-copied:2")  # inside the copies' transaction
    answers_now(index, "planets")
    clean_index(root, index)
    assert state(index, root, queries) == reference
