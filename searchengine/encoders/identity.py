"""A model's identity: a content hash of the files that define it, cheap to recompute.

The query path uses it to decide whether a cached ONNX export still matches the configured
weights, so it must not import torch (or anything that does). Hashing a 600 MB checkpoint
takes seconds, so each file's sha256 is memoised by (path, size, mtime_ns) in a small JSON
next to the exports; an unchanged file is never read twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from searchengine.encoders.base import Resolved

MEMO_NAME = "hashes.json"
# Files that can define a model; everything else in a model folder (READMEs, images, other
# runtimes' conversions) cannot change what the PyTorch weights compute.
MODEL_SUFFIXES = (".json", ".txt", ".safetensors", ".bin", ".model", ".pt", ".pth", ".gz")
SKIP_DIRS = {"onnx", "openvino", "coreml", "flax", "tf", "__pycache__"}
CHUNK = 1 << 20

_MEMO_LOCK = threading.Lock()


def folder_files(folder: Path) -> dict[str, Path]:
    """The files under a model folder that define it, keyed by their relative path."""
    found: dict[str, Path] = {}
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in names:
            if name.startswith(".") or not name.lower().endswith(MODEL_SUFFIXES):
                continue
            path = Path(root) / name
            found[path.relative_to(folder).as_posix()] = path
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class HashMemo:
    """sha256 of files, remembered by (resolved path, size, mtime_ns) in a JSON file.

    Files in the memo's own folder (the exports beside it) are keyed by their path relative
    to it, so an index moved or copied with its times kept (`mv`, `cp -a`, `rsync -a`) still
    finds them: its queries, which never write the memo, would otherwise hash every export
    again. A missing or unwritable memo only costs time: hashes are recomputed, never
    trusted from a stale entry.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._home = os.path.realpath(path.parent) + os.sep if path is not None else None
        self._entries: dict[str, list] = {}
        self._dirty = False
        if path is not None:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(raw, dict):
                    self._entries = raw
            except (OSError, ValueError):
                pass

    def _key(self, real: str) -> str:
        if self._home is not None and real.startswith(self._home):
            return "./" + Path(real[len(self._home) :]).as_posix()
        return real

    def digest(self, path: Path) -> str:
        real = os.path.realpath(path)
        stat = os.stat(real)
        key = [stat.st_size, stat.st_mtime_ns]
        name = self._key(real)
        for entry in (self._entries.get(name), self._entries.get(real)):  # absolute: older memos
            if isinstance(entry, list) and len(entry) == 3 and entry[:2] == key:
                return str(entry[2])
        value = sha256_file(Path(real))
        self._entries[name] = [*key, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Write the memo atomically if it changed; a read-only index folder is fine."""
        if not self._dirty or self.path is None:
            return
        with _MEMO_LOCK:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".hashes.", suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(self._entries, handle, sort_keys=True)
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
                self._dirty = False
            except OSError:
                pass


def identity(
    space: str, descriptor: Mapping[str, str], files: Mapping[str, Path], memo: HashMemo
) -> str:
    """sha256 over the space, what names the architecture (`descriptor`: strings that are not
    files, such as an open_clip model name or pretrained tag), and each file's content hash.
    File keys are labels (relative paths), so moving a model folder keeps its identity."""
    record = {
        "space": space,
        "descriptor": dict(sorted(descriptor.items())),
        "files": {label: memo.digest(path) for label, path in sorted(files.items())},
    }
    blob = json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def describe_folder(config: object, resolved: Resolved) -> tuple[dict[str, str], dict[str, Path]]:
    """A model that is one folder (sentence-transformers, save_pretrained) is its files."""
    return {}, folder_files(Path(resolved.location))
