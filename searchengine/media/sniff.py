"""Deciding a file's modality from its first bytes, with the extension only as a hint."""

from __future__ import annotations

import os

from searchengine.errors import Skip

TEXT_EXT = {
    ".txt",
    ".text",
    ".md",
    ".markdown",
    ".rst",
    ".html",
    ".htm",
    ".xhtml",
    ".csv",
    ".tsv",
    ".json",
    ".jsonl",
    ".log",
    ".xml",
    ".yaml",
    ".yml",
    ".toml",
    ".ini",
    ".cfg",
    ".conf",
    ".tex",
    ".org",
    ".adoc",
    ".srt",
    ".vtt",
    # source code
    ".py",
    ".pyi",
    ".js",
    ".mjs",
    ".ts",
    ".tsx",
    ".jsx",
    ".java",
    ".kt",
    ".scala",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".hpp",
    ".cs",
    ".go",
    ".rs",
    ".rb",
    ".php",
    ".pl",
    ".sh",
    ".bash",
    ".zsh",
    ".sql",
    ".css",
    ".scss",
    ".swift",
    ".lua",
    ".r",
    ".m",
    ".hs",
    ".ml",
    ".ex",
    ".exs",
    ".erl",
    ".clj",
    ".dart",
    ".vue",
    ".svelte",
    ".el",
    ".vim",
    ".ps1",
    ".bat",
}
PDF_EXT = {".pdf"}
IMAGE_EXT = {
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
}
AUDIO_EXT = {
    ".wav",
    ".mp3",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".m4a",
    ".aac",
    ".wma",
    ".aiff",
    ".aif",
}
VIDEO_EXT = {
    ".mp4",
    ".m4v",
    ".mkv",
    ".webm",
    ".mov",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ogv",
    ".wmv",
    ".3gp",
    ".ts",
}

SNIFF_BYTES = 8192

# (magic at offset, type, format); checked before any extension
_MAGIC: list[tuple[int, bytes, str, str]] = [
    (0, b"%PDF-", "text", "pdf"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "png"),
    (0, b"\xff\xd8\xff", "image", "jpeg"),
    (0, b"GIF87a", "image", "gif"),
    (0, b"GIF89a", "image", "gif"),
    (0, b"BM", "image", "bmp"),
    (0, b"II*\x00", "image", "tiff"),
    (0, b"MM\x00*", "image", "tiff"),
    (0, b"fLaC", "audio", "flac"),
    (0, b"ID3", "audio", "mp3"),
    (0, b"\x1aE\xdf\xa3", "video", "matroska"),
    (0, b"PK\x03\x04", "archive", "zip"),
    (0, b"\x7fELF", "binary", "elf"),
    (0, b"\x1f\x8b", "archive", "gzip"),
]


def _riff(head: bytes) -> tuple[str, str] | None:
    if head[:4] != b"RIFF" or len(head) < 12:
        return None
    return {b"WEBP": ("image", "webp"), b"WAVE": ("audio", "wav"), b"AVI ": ("video", "avi")}.get(
        head[8:12]
    )


def magic_type(head: bytes) -> tuple[str, str] | None:
    """(modality, format) from well-known signatures, or None."""
    for offset, sig, kind, fmt in _MAGIC:
        if head[offset : offset + len(sig)] == sig:
            return kind, fmt
    riff = _riff(head)
    if riff:
        return riff
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"avif"):
            return "image", "heif"
        if brand in (b"M4A ", b"M4B "):
            return "audio", "m4a"
        return "video", "mp4"
    if head[:4] == b"OggS":
        video = b"theora" in head[:512] or b"OVP80" in head[:512]
        return ("video", "ogg") if video else ("audio", "ogg")
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "audio", "mp3"
    return None


def looks_like_text(head: bytes) -> bool:
    """No NUL bytes and few control characters: the usual test for a text file."""
    if not head:
        return True
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True  # UTF-16 with BOM
    if b"\x00" in head:
        return False
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return control / len(head) < 0.05


def sniff(path: str, head: bytes) -> str:
    """Modality of a file: text, image, audio or video; raises Skip with the reason otherwise."""
    name = os.path.basename(path)
    ext = os.path.splitext(name)[1].lower()
    if not head:
        raise Skip("empty file")
    magic = magic_type(head)
    if magic is not None:
        kind, fmt = magic
        if fmt == "ogg" and ext == ".ogv":
            kind = "video"
        if kind in ("archive", "binary"):
            raise Skip(f"{fmt} file, not a document or media")
        return kind
    if ext in IMAGE_EXT | AUDIO_EXT | VIDEO_EXT:
        # no known signature: still worth a decoder's try, which will record why it fails
        return "image" if ext in IMAGE_EXT else "audio" if ext in AUDIO_EXT else "video"
    if looks_like_text(head):
        return "text"  # any readable text is worth finding, whatever its extension
    what = f"'{ext}' file" if ext else "file"
    raise Skip(f"binary content in a {what} (not a known document or media format)")
