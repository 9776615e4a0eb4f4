"""Text in pictures: lines read by OCR, with their boxes, grouped into blocks.

The engine is RapidOCR (PP-OCRv4 detection and recognition as ONNX models shipped inside
the `rapidocr-onnxruntime` wheel: nothing is downloaded, nothing needs a GPU); the choice
against Tesseract is measured in docs/benchmarks.md (scripts/eval_ocr.py). It reads pixels
only, so it lives with the decoders (`media/` knows files; no embedding model here).

Cheap on pictures without text: a detection pass on a small copy (`MAX_CHECK_SIDE`) finds
no text box, and recognition is never run.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

ENGINE = "rapidocr"
"""The per-index setting's value when OCR is on (`--ocr off` turns it off)."""
MAX_CHECK_SIDE = 640
"""Longest side of the copy the pre-check detects text on."""
MAX_READ_SIDE = 1600
"""Longest side OCR reads at: a page of print at ~140 dpi; larger costs time, not words."""
MIN_SCORE = 0.6
"""Recognised lines under this confidence are dropped (mostly texture read as letters)."""

_lock = threading.Lock()
_engine: Any = None


@dataclass(slots=True)
class Line:
    """A recognised line: its text, box [x, y, w, h] in the caller's pixels, confidence."""

    text: str
    box: list[int]
    score: float


def _get() -> Any:
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            threads = int(os.environ.get("SEARCHENGINE_THREADS", "0") or 0) or min(
                2, os.cpu_count() or 1
            )
            _engine = RapidOCR(
                intra_op_num_threads=threads, inter_op_num_threads=1, print_verbose=False
            )
        return _engine


def available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _scaled(image: Image.Image, side: int) -> tuple[np.ndarray, float]:
    """RGB->BGR array no larger than `side`, and the factor back to the caller's pixels."""
    im = image.convert("RGB")
    scale = min(1.0, side / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    return np.asarray(im)[:, :, ::-1].copy(), 1.0 / scale


def has_text(image: Image.Image) -> bool:
    """Whether a text box is detected on a small copy (the pre-check; no recognition)."""
    arr, _ = _scaled(image, MAX_CHECK_SIDE)
    boxes, _ = _get()(arr, use_det=True, use_cls=False, use_rec=False)
    return bool(boxes is not None and len(boxes))


def read_lines(image: Image.Image, check: bool = True) -> list[Line]:
    """The lines of text in an image, top to bottom; [] when the pre-check finds none."""
    if min(image.size) < 8:
        return []
    if check and not has_text(image):
        return []
    arr, back = _scaled(image, MAX_READ_SIDE)
    result, _ = _get()(arr, use_det=True, use_cls=False, use_rec=True)
    lines = []
    for points, text, score in result or []:
        text = " ".join(str(text).split())
        if not text or float(score) < MIN_SCORE:
            continue
        xs = [p[0] * back for p in points]
        ys = [p[1] * back for p in points]
        x0, y0 = int(min(xs)), int(min(ys))
        box = [x0, y0, int(max(xs)) - x0, int(max(ys)) - y0]
        lines.append(Line(text, box, float(score)))
    lines.sort(key=lambda ln: (ln.box[1], ln.box[0]))
    return lines


def blocks(lines: list[Line], max_chars: int = 1000) -> list[tuple[str, list[int]]]:
    """Lines grouped into blocks (a gap over 1.5 line heights, or `max_chars`, starts a new
    one), each as (text, union box): a phrase over two lines stays one passage."""
    out: list[tuple[str, list[int]]] = []
    cur: list[Line] = []

    def flush() -> None:
        if cur:
            x0 = min(ln.box[0] for ln in cur)
            y0 = min(ln.box[1] for ln in cur)
            x1 = max(ln.box[0] + ln.box[2] for ln in cur)
            y1 = max(ln.box[1] + ln.box[3] for ln in cur)
            out.append(("\n".join(ln.text for ln in cur), [x0, y0, x1 - x0, y1 - y0]))
            cur.clear()

    for line in lines:
        if cur:
            last = cur[-1]
            gap = line.box[1] - (last.box[1] + last.box[3])
            size = sum(len(ln.text) + 1 for ln in cur) + len(line.text)
            if gap > 1.5 * max(last.box[3], 1) or size > max_chars:
                flush()
        cur.append(line)
    flush()
    return out
