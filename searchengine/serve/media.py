"""Files the server hands out: only catalogued ones, by id, and only while they are still the
file that was catalogued. Pictures of hits (an image, or a video's frame at a moment) are
made in memory and kept in a small cache."""

from __future__ import annotations

import io
import mimetypes
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from searchengine.store.catalog import FileRecord
from searchengine.thumbs import picture

SERVABLE_STATES = ("indexed", "pending")
"""Failed and skipped files were never read as media: they are not handed out either."""

TEXT_MIME = "text/plain; charset=utf-8"
"""Documents go out as plain text: an HTML or SVG file from the library must never run as a
page of this server."""


class NotServable(Exception):
    """A file that exists in the catalog but cannot be handed out; the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Servable:
    path: str
    size: int
    mtime_ns: int
    media_type: str
    st: os.stat_result


def check_file(record: FileRecord) -> Servable:
    """The catalogued file of `record`, if it is still there and still the same file.

    The path is resolved (symlinks followed) and must land on a regular file whose size and
    modification time are the catalogued ones: a file replaced since indexing is refused.
    When resolving went through a symlink (the real path differs from the catalogued one),
    size and time prove nothing (a link re-pointed at another file of the same size and a
    copied mtime passes them), so the content must also hash to the catalogued BLAKE2b;
    the hash is computed once per (inode, size, mtime, ctime) and kept. Nothing but the
    catalogued path is opened, so no request can name another file."""
    if record.state not in SERVABLE_STATES:
        raise NotServable(404, f"file {record.id} is {record.state}: {record.reason or ''}".strip())
    path = os.fsdecode(record.path_key)
    try:
        real = os.path.realpath(path, strict=True)
        st = os.stat(real)
    except OSError:
        raise NotServable(404, f"file {record.id} is gone from disk since it was indexed") from None
    if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (
        record.size,
        record.mtime_ns,
    ):
        raise NotServable(
            409, f"file {record.id} changed on disk since it was indexed: run 'searchengine index'"
        )
    if real != os.path.abspath(path) and (
        record.sha is None
        or content_hash(real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        != record.sha
    ):
        raise NotServable(
            409, f"file {record.id} changed on disk since it was indexed: run 'searchengine index'"
        )
    return Servable(real, st.st_size, st.st_mtime_ns, media_type(record), st)


@lru_cache(maxsize=4096)
def content_hash(real: str, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    """The content hash the catalog keeps (the stat fields are the cache key: a changed file
    is hashed again)."""
    from searchengine.crawler import file_hash

    try:
        return file_hash(real)
    except OSError:
        return ""


MEDIA_TYPES = {
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".ogv": "video/ogg",
    ".oga": "audio/ogg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
}
"""What players expect for suffixes the standard table lacks or names otherwise."""


def media_type(record: FileRecord) -> str:
    if record.type == "text":
        return TEXT_MIME
    ext = os.path.splitext(record.path)[1].lower()
    guessed = MEDIA_TYPES.get(ext) or mimetypes.guess_type(record.path)[0]
    if guessed and guessed.split("/")[0] == record.type and "svg" not in guessed:
        return guessed
    return "application/octet-stream"


class Thumbnails:
    """JPEG pictures of hits, the most recent `capacity` kept in memory: a results page asks
    for the same few again as people page back and forth."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, file: Servable, kind: str, at: float, size: int) -> bytes:
        at = round(at, 1) if kind == "video" else 0.0
        key = (file.path, file.mtime_ns, file.size, at, size)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = jpeg(file.path, at, size)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return data


def jpeg(path: str, at: float, size: int) -> bytes:
    """An image, or a video's frame at `at` seconds, upright, at most `size` pixels a side."""
    image = picture(path, at, size)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=82)
    return buf.getvalue()
