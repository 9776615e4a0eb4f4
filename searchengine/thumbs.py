"""Thumbnails: the picture a hit shows, a video's frame at a moment or an image upright."""

from __future__ import annotations

import os
from pathlib import Path

from searchengine.crawler import display_path
from searchengine.errors import DecodeError, Skip, UserError


def thumbnail(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    at: float = 0.0,
    max_side: int | None = None,
) -> Path:
    """Write the picture a hit shows: a video's frame at `at` seconds, or an image itself,
    upright, as JPEG or PNG (by `out`'s extension)."""
    from PIL import Image, ImageOps

    source = os.path.abspath(os.fspath(path))
    if not os.path.isfile(source):
        raise UserError(f"no such file: {display_path(source)}")
    if at < 0:
        raise UserError("--at must be zero or more seconds")
    with open(source, "rb") as fh:
        kind = _sniff_or_none(source, fh.read(8192))
    try:
        if kind == "video":
            from searchengine.media.video import frame_at

            image = frame_at(source, at)
        elif kind == "image":
            with Image.open(source) as im:
                image = ImageOps.exif_transpose(im).convert("RGB")
        else:
            raise UserError(f"{display_path(source)} is not an image or a video")
    except DecodeError as exc:
        raise UserError(f"cannot take a frame from {display_path(source)}: {exc}") from None
    if max_side:
        image.thumbnail((max_side, max_side))
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    return target


def _sniff_or_none(path: str, head: bytes) -> str | None:
    from searchengine.media.sniff import sniff

    try:
        return sniff(path, head)
    except Skip:
        return None
