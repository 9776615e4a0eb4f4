"""Decoding files into segments; knows files and formats, never models."""

from __future__ import annotations

import importlib

from searchengine.config import IndexConfig
from searchengine.errors import Skip
from searchengine.media.sniff import SNIFF_BYTES, sniff
from searchengine.types import Decoded


def decode_file(path: str, config: IndexConfig) -> Decoded:
    """Sniff a file and run its modality's decoder; raises Skip/DecodeError/OSError."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    file_type = sniff(path, head)
    if file_type == "text":
        from searchengine.media.image import ocr_setting
        from searchengine.media.text import decode_text

        return decode_text(
            path,
            int(config.max_text_mb * 1e6),
            config.chunk_chars,
            config.chunk_overlap,
            ocr=ocr_setting(config),
        )
    try:
        module = importlib.import_module(f"searchengine.media.{file_type}")
    except ModuleNotFoundError:
        raise Skip(f"{file_type} files are not supported yet") from None
    return module.decode(path, config)
