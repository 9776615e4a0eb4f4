"""`index` and `status` print one line per reason (a count and a few examples), not one per
file; `--json` still lists every file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli


@pytest.fixture
def album(tmp_path: Path) -> Path:
    """Seven real images (pending: the default CLIP weights are not here), four broken ones
    (failed, all for the same reason) and a note."""
    root = tmp_path / "album"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"photo{i}.png")
    for i in range(4):
        (root / f"broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (root / "note.txt").write_text("A walk along the river at dusk.")
    return root


def _lines(text: str, state: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"{state}: ")]


def test_index_and_status_group_files_by_reason(album, index_dir, empty_caches):
    res = run_cli("index", str(album), "--index", str(index_dir))
    assert res.returncode == 0, res.stderr
    pending = _lines(res.stdout, "pending")
    assert len(pending) == 1, res.stdout
    assert pending[0].startswith("pending: 7 files (e.g. ") and "+4 more" in pending[0]
    assert "clip model" in pending[0]
    assert sum(pending[0].count(f"photo{i}.png") for i in range(7)) == 3
    failed = _lines(res.stdout, "failed")
    assert len(failed) == 1 and failed[0].startswith("failed: 4 files (e.g. "), res.stdout
    assert "+1 more" in failed[0]
    # the missing-model hint is on the pending line, not repeated as a note
    assert "clip model" not in res.stderr

    res = run_cli("status", "--index", str(index_dir))
    assert res.returncode == 0, res.stderr
    assert _lines(res.stdout, "pending") == pending
    assert _lines(res.stdout, "failed") == failed
    assert not any("photo" in line for line in res.stdout.splitlines() if "pending" not in line)

    info = json.loads(run_cli("status", "--index", str(index_dir), "--json").stdout)
    assert sorted(Path(f["path"]).name for f in info["pending"]) == [
        f"photo{i}.png" for i in range(7)
    ]
    assert len(info["failed"]) == 4


def test_index_json_lists_every_file(album, index_dir, empty_caches):
    res = run_cli("index", str(album), "--index", str(index_dir), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    states = sorted((p["state"], Path(p["path"]).name) for p in summary["problems"])
    assert states == [("failed", f"broken{i}.png") for i in range(4)] + [
        ("pending", f"photo{i}.png") for i in range(7)
    ]
    assert summary["pending"] == 7 and summary["failed"] == 4
