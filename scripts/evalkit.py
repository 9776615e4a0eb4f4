"""Pieces shared by the evaluation scripts (eval_retrieval.py, eval_similar.py): the error a
user can act on, rank metrics, fetching sample sets, staging a corpus, indexing it."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from searchengine import Engine

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


class EvalError(Exception):
    """A problem the user can act on: printed as one line, exit code 2."""


# ---- metrics (pure) ------------------------------------------------------------------------


def recall_at(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Fraction of the relevant items found among the first k of `ranked`."""
    if not relevant:
        raise ValueError("a query needs at least one relevant item")
    if k <= 0:
        raise ValueError("k must be at least 1")
    found = set(ranked[:k]) & set(relevant)
    return len(found) / len(set(relevant))


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: sum of gain_i / log2(i + 1) over 1-based ranks i."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at(ranked: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """DCG of the first k of `ranked` (gain 0 for items not in `gains`) over the DCG of the
    best possible order of all the graded items: 1.0 for a perfect top k."""
    if k <= 0:
        raise ValueError("k must be at least 1")
    ideal = dcg(sorted((g for g in gains.values() if g > 0), reverse=True)[:k])
    if ideal <= 0:
        raise ValueError("a query needs at least one item with a positive gain")
    return dcg([gains.get(item, 0.0) for item in ranked[:k]]) / ideal


# ---- samples, staging, indexing ------------------------------------------------------------


def has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def ensure_samples(name: str, samples: Path = SAMPLES) -> Path:
    """samples/<name>, fetched by scripts/fetch_samples.py when missing or empty."""
    folder = samples / name
    if has_files(folder):
        return folder
    print(f"fetching sample set '{name}' with scripts/fetch_samples.py ...", file=sys.stderr)
    cmd = [sys.executable, str(REPO / "scripts" / "fetch_samples.py"), name]
    if samples.resolve() != SAMPLES.resolve():
        cmd += ["--dest", str(samples)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EvalError(f"could not fetch sample set '{name}': {exc}") from None
    if res.returncode != 0 or not has_files(folder):
        lines = (res.stderr or res.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit code {res.returncode}"
        raise EvalError(
            f"could not fetch sample set '{name}' (python scripts/fetch_samples.py {name}): {why}"
        )
    return folder


def stage(files: Mapping[str, Path], dest: Path) -> dict[str, str]:
    """Mirror `files` (key -> source) into dest/key, copying only what changed and removing
    what is no longer wanted, so a re-run re-indexes nothing. Returns real path -> key."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {(dest / key).resolve(): key for key in files}
    for p in sorted(dest.rglob("*"), reverse=True):
        if p.is_file() and p.resolve() not in wanted:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    for key, src in files.items():
        dst = dest / key
        st = src.stat()
        if dst.is_file():
            have = dst.stat()
            if have.st_size == st.st_size and have.st_mtime_ns == st.st_mtime_ns:
                continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return {os.path.realpath(p): key for p, key in wanted.items()}


def progress_printer(label: str, every_s: float = 15.0) -> Callable[[str, int, int, str], None]:
    last = [0.0]

    def report(phase: str, done: int, total: int, _path: str) -> None:
        now = time.monotonic()
        if phase == "embed" and now - last[0] >= every_s:
            last[0] = now
            print(f"  {label}: embedded {done}/{total} files", file=sys.stderr, flush=True)

    return report


def index_corpus(eng: Engine, corpus: Path, label: str, file_type: str) -> str:
    """Index (or catch up) `corpus` and check every file of `file_type` made it in; returns a
    note on what the index holds and how long this run took."""
    t0 = time.perf_counter()
    summary = eng.index([corpus], progress=progress_printer(label))
    index_s = time.perf_counter() - t0
    status = eng.status()
    counts = status["types"].get(file_type, {})
    if counts.get("pending"):
        reasons = {p["reason"] for p in status["pending"] if p.get("reason")}
        raise EvalError(
            f"{label}: {counts['pending']} files wait for a model: "
            + ("; ".join(sorted(reasons)) or "weights missing")
        )
    if not counts.get("indexed"):
        raise EvalError(f"{label}: no {file_type} file could be indexed")
    vectors = {s: v["vectors"] for s, v in status["spaces"].items() if v["vectors"]}
    return (
        f"index: {counts.get('indexed', 0)} files indexed, {counts.get('failed', 0)} failed, "
        f"{counts.get('skipped', 0)} skipped; vectors "
        + ", ".join(f"{s} {n}" for s, n in vectors.items())
        + f"; {summary.added + summary.changed} embedded in this run, {index_s:.1f} s"
    )


def code_version() -> str:
    """The commit of the code being measured, and whether searchengine/ differs from it."""
    git = ["git", "-C", str(REPO)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "searchengine"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "commit unknown (no git)"
    if not head:
        return "commit unknown (not a git checkout)"
    return f"commit {head}" + (" with uncommitted changes in searchengine/" if dirty else "")
