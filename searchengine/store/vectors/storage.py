"""One file per index: the FAISS bytes, then a JSON header (kind, dim, spec, caller state),
then a fixed trailer with lengths, checksums and a magic tag.

Index and state live in the same file, written to a temp file, fsynced and renamed over the
old one, so a reader or a crash only ever sees a whole (index, state) pair. The trailer is at
the end because FAISS reads from the start of a file (and memory-maps by file name); it ignores
what follows the index.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import faiss

MAGIC = b"SEANN\x00v1"
TRAILER = struct.Struct("<8sQQII")  # magic, faiss bytes, header bytes, faiss crc32, header crc32
_CHUNK = 1 << 22

# FAISS's zero-copy mmap of flat codes and of IVF array inverted lists: the mapped index can be
# searched and written back out, but not changed in place (it must be copied first, see
# FaissIndex._writable). IO_FLAG_MMAP is not used: for IVF it yields OnDiskInvertedLists, whose
# write_index records a reference to the file instead of the data.
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


def _crc(path: Path, length: int) -> int:
    crc = 0
    with open(path, "rb") as fh:
        left = length
        while left > 0:
            block = fh.read(min(_CHUNK, left))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            left -= len(block)
    return crc


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write(path: Path, index: faiss.Index, header: dict[str, Any]) -> None:
    """Write index + header to `path` atomically (temp file, fsync, rename, fsync folder).

    One writer per path at a time (the caller's lock): temp files of earlier, killed writers
    are removed first.
    """
    from searchengine import faults

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(tmp))
        faiss_len = tmp.stat().st_size
        faiss_crc = _crc(tmp, faiss_len)
        body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        with open(tmp, "ab") as fh:
            fh.write(body)
            fh.write(TRAILER.pack(MAGIC, faiss_len, len(body), faiss_crc, zlib.crc32(body)))
            fh.flush()
            os.fsync(fh.fileno())
        faults.point("vectors-written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def read_header(path: Path) -> dict[str, Any] | None:
    """The JSON header if the file is whole and ours (sizes and checksums agree), else None."""
    return _header(path, check_index=True)


def peek_header(path: Path) -> dict[str, Any] | None:
    """The JSON header without checking the FAISS bytes' checksum (for status: no read of a
    large file); None when missing or not ours."""
    return _header(path, check_index=False)


def _header(path: Path, check_index: bool) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < TRAILER.size:
                return None
            fh.seek(size - TRAILER.size)
            magic, faiss_len, body_len, faiss_crc, body_crc = TRAILER.unpack(fh.read(TRAILER.size))
            if magic != MAGIC or faiss_len + body_len + TRAILER.size != size:
                return None
            fh.seek(faiss_len)
            body = fh.read(body_len)
        if zlib.crc32(body) != body_crc:
            return None
        if check_index and _crc(path, faiss_len) != faiss_crc:
            return None
        header = json.loads(body)
    except (OSError, ValueError, struct.error):
        return None
    return header if isinstance(header, dict) else None


def read_index(path: Path, mmap: bool) -> faiss.Index | None:
    """The FAISS index at the start of `path` (call read_header first to validate the file)."""
    try:
        return faiss.read_index(str(path), MMAP_FLAGS if mmap else 0)
    except RuntimeError:
        return None
