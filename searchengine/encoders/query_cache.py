"""The folder of ONNX query exports kept with an index (`<index>/query-models`).

    <space>-<identity[:24]>/          one checked export (see onnx_query.py)
    <space>-<identity[:24]>.rejected  why that model cannot be exported (not retried)
    hashes.json                       sha256 of weight and export files by (path, size, mtime)
    pointers.json                     per space: the model key and where its weights were
                                      found at export time, for spaces whose resolution needs
                                      torch (open_clip pretrained tags)

Everything here is torch-free: the query process uses it to find a valid export.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from searchengine.encoders.base import Resolved
from searchengine.encoders.identity import MEMO_NAME, HashMemo
from searchengine.encoders.onnx_query import FORMAT, MODEL_FILE, ExportMeta

log = logging.getLogger(__name__)

POINTERS_NAME = "pointers.json"
REJECTED_SUFFIX = ".rejected"


def _write_json_atomic(path: Path, value: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=2, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class QueryCache:
    """Names, finds, validates and prunes the exports in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.memo = HashMemo(self.folder / MEMO_NAME)

    @staticmethod
    def name(space: str, identity: str) -> str:
        return f"{space}-{identity[:24]}"

    def path(self, space: str, identity: str) -> Path:
        return self.folder / self.name(space, identity)

    def has_exports(self, space: str) -> bool:
        """Whether any export of the space is here: without one, hashing weights is waste."""
        return any(entry.is_dir() for entry in self.folder.glob(f"{space}-*"))

    def find(self, space: str, identity: str, *, latest: bool = False) -> Path | None:
        """The export for this exact model, if it is whole and its files are unchanged.

        Queries take an export of any readable format; `latest` (the indexing side) only one
        of the current format, so that an older one is replaced."""
        folder = self.path(space, identity)
        if not (folder / MODEL_FILE).is_file():
            return None
        try:
            meta = ExportMeta.load(folder)
            if latest and meta.format != FORMAT:
                return None
            if meta.space != space or meta.identity != identity or not meta.files:
                raise ValueError("query.json describes another model")
            for file_name, digest in meta.files.items():
                if self.memo.digest(folder / file_name) != digest:
                    raise ValueError(f"{file_name} changed since it was exported")
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring the %s query export in %s: %s", space, folder, exc)
            return None
        return folder

    def discard(self, space: str, identity: str) -> None:
        """Remove an export folder that `find` refused, so a new one can take its place."""
        shutil.rmtree(self.path(space, identity), ignore_errors=True)

    def rejected(self, space: str, identity: str) -> str | None:
        """Why this model's export was rejected before, if it was (by this export format)."""
        record = _read_json(self.folder / (self.name(space, identity) + REJECTED_SUFFIX))
        if record.get("format") != FORMAT:
            return None
        return str(record.get("reason") or "rejected")

    def reject(self, space: str, identity: str, reason: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / (self.name(space, identity) + REJECTED_SUFFIX)
        _write_json_atomic(path, {"format": FORMAT, "reason": reason})

    def pointer(self, space: str, model_key: str) -> Resolved | None:
        """Where the weights of `model_key` were at the last export, if they are still there."""
        entry = _read_json(self.folder / POINTERS_NAME).get(space)
        if not isinstance(entry, dict) or entry.get("model_key") != model_key:
            return None
        location = str(entry.get("location", ""))
        if not location or not os.path.exists(location):
            return None
        return Resolved(space, str(entry.get("name", "")), location, "pointer")

    def set_pointer(self, space: str, model_key: str, resolved: Resolved) -> None:
        pointers = _read_json(self.folder / POINTERS_NAME)
        entry = {"model_key": model_key, "name": resolved.name, "location": resolved.location}
        if pointers.get(space) == entry:
            return
        pointers[space] = entry
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(self.folder / POINTERS_NAME, pointers)

    def prune(self, space: str, keep: str) -> None:
        """Remove this space's exports and verdicts for other models (the index has one)."""
        for entry in self.folder.glob(f"{space}-*"):
            if entry.name in (keep, keep + REJECTED_SUFFIX):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.endswith(REJECTED_SUFFIX):
                entry.unlink(missing_ok=True)
