"""Thumbnails: the picture a hit shows, a video's frame at a moment or an image upright."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from searchengine.crawler import display_path
from searchengine.errors import DecodeError, Skip, UserError

if TYPE_CHECKING:
    from PIL.Image import Image


def thumbnail(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    at: float = 0.0,
    max_side: int | None = None,
) -> Path:
    """Write the picture a hit shows: a video's frame at `at` seconds, or an image itself,
    upright, as JPEG or PNG (by `out`'s extension)."""
    image = picture(path, at, max_side)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    return target


def picture(path: str | os.PathLike[str], at: float = 0.0, max_side: int | None = None) -> Image:
    """The picture a hit shows, in memory (the server encodes it without a temporary file):
    a video's frame at `at` seconds, or an image upright, RGB, at most `max_side` pixels."""
    from PIL import Image as PIL
    from PIL import ImageOps

    source = os.path.abspath(os.fspath(path))
    if not os.path.isfile(source):
        raise UserError(f"no such file: {display_path(source)}")
    if not math.isfinite(at) or at < 0:
        raise UserError("--at must be zero or more seconds")
    with open(source, "rb") as fh:
        kind = _sniff_or_none(source, fh.read(8192))
    try:
        if kind == "video":
            from searchengine.media.video import frame_at

            image = frame_at(source, at)
        elif kind == "image":
            with PIL.open(source) as im:
                image = ImageOps.exif_transpose(im).convert("RGB")
        else:
            raise UserError(f"{display_path(source)} is not an image or a video")
    except (DecodeError, OSError) as exc:
        raise UserError(f"cannot take a frame from {display_path(source)}: {exc}") from None
    if max_side:
        image.thumbnail((max_side, max_side))
    return image


def _sniff_or_none(path: str, head: bytes) -> str | None:
    from searchengine.media.sniff import sniff

    try:
        return sniff(path, head)
    except Skip:
        return None
