"""The README's first lines and its Python example are what a newcomer runs: keep them true."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_readme_starts_with_the_two_commands():
    head = (REPO / "README.md").read_text().splitlines()[:5]
    assert any(line.strip().startswith("make demo") for line in head)
    assert any(line.strip().startswith("make test") for line in head)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_readme_python_example_runs():
    block = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    res = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert res.returncode == 0, res.stderr
    assert "2 files added" in res.stdout
    assert "trip.md" in res.stdout.splitlines()[1]
    assert "'indexed': 2" in res.stdout
