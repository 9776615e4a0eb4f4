"""Shared fixtures: small real-text corpora, index folders, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# two pytest-xdist workers share the 2 cores: one torch thread each
os.environ.setdefault("SEARCHENGINE_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")

REPO = Path(__file__).resolve().parents[1]

TOPICS = {
    "budget.txt": "The quarterly budget meeting reviewed spending on marketing and payroll. "
    "Finance asked every team to cut travel costs by ten percent next quarter.",
    "garden.md": "# Spring garden\n\nPlant tomatoes after the last frost. Water the seedlings "
    "every morning and add compost to the raised beds.",
    "recipe.html": "<html><head><title>Pancakes</title><style>p{}</style></head><body>"
    "<p>Whisk flour, eggs and milk into a smooth batter.</p><p>Fry the pancakes in butter "
    "until golden.</p><script>var x=1;</script></body></html>",
    "astronomy.rst": "Jupiter is the largest planet in the solar system. Its moons Io, Europa, "
    "Ganymede and Callisto were discovered by Galileo in 1610.",
    "server.log": "2024-01-03 12:00:01 ERROR database connection refused on port 5432\n"
    "2024-01-03 12:00:05 INFO retrying connection to postgres\n",
    "code.py": "def fibonacci(n: int) -> int:\n    '''Return the n-th Fibonacci number.'''\n"
    "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
}


def write_corpus(root: Path, topics: dict[str, str] = TOPICS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, body in topics.items():
        (root / name).write_text(body, encoding="utf-8")
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs")


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """The installed CLI in a fresh process, as a user runs it."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "searchengine.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


def load_script(name: str):
    """Import a module from scripts/ (they are tools, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def test_models() -> dict[str, Path]:
    """Tiny random checkpoints in the real formats (made once; `make models` makes the same)."""
    return load_script("make_test_models").make_all(REPO / "tests" / ".models")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """Real media fetched from Debian packages by scripts/fetch_samples.py (git-ignored)."""
    root = REPO / "samples"
    missing = [s for s in ("images", "sounds", "video") if not any((root / s).glob("*"))]
    if missing:
        res = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "fetch_samples.py"), *missing],
            capture_output=True, text=True, timeout=900,
        )
        assert res.returncode == 0, res.stdout + res.stderr
    return root


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never download, whatever the environment says (a test that checks downloads
    serves them from 127.0.0.1 and lifts this itself)."""
    monkeypatch.delenv("SEARCHENGINE_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("SEARCHENGINE_OFFLINE", "1")


@pytest.fixture
def empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache and an empty open_clip cache (~/.cache/clip)."""
    import huggingface_hub.constants

    home = tmp_path / "home"
    hub = home / ".cache" / "huggingface" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(hub.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    # huggingface_hub reads the cache location once, at import.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    return hub
