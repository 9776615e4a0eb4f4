"""Example files sent to the server: written to a private temporary folder, checked to be a
document or media file, used as a query and deleted; never added to the index."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from searchengine.errors import Skip
from searchengine.media.sniff import sniff
from searchengine.types import FILE_TYPES

DEFAULT_MAX_BYTES = 64 << 20
"""Uploads above this are refused (--max-upload-mb): a photo, a song or a short clip fits."""

_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")
_CHUNK = 1 << 20


class BadUpload(Exception):
    """An upload that cannot be used as an example; the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Uploads:
    """Where examples wait while they are queried: one private folder for the server's life."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        if folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="searchengine-uploads-"))
            self._owned = True
        else:
            self.folder = Path(folder)
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._owned = False

    def close(self) -> None:
        if self._owned:
            shutil.rmtree(self.folder, ignore_errors=True)

    @contextmanager
    def saved(self, source: BinaryIO, filename: str | None, limit: int) -> Iterator[str]:
        """The upload as a file of its own (its suffix kept: decoders take it as a hint),
        checked to be a document, image, recording or video; deleted on leaving."""
        suffix = os.path.splitext(os.path.basename(filename or ""))[1]
        suffix = suffix if _SUFFIX.fullmatch(suffix) else ""
        fd, path = tempfile.mkstemp(suffix=suffix, dir=self.folder)
        try:
            written = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise BadUpload(413, f"upload too large: at most {limit / (1 << 20):g} MiB")
                    out.write(chunk)
            if written == 0:
                raise BadUpload(400, "the uploaded file is empty")
            with open(path, "rb") as fh:
                head = fh.read(8192)
            try:
                kind = sniff(path, head)
            except Skip as exc:
                raise BadUpload(415, f"not a document, image, recording or video: {exc}") from None
            if kind not in FILE_TYPES:
                raise BadUpload(415, f"not a document, image, recording or video ({kind})")
            yield path
        finally:
            os.unlink(path)
