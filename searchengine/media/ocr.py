"""Text in pictures: lines read by OCR, with their boxes, grouped into blocks.

Two engines, chosen per index (`index --ocr tesseract|rapidocr|off`, recorded in the
index config so results do not change between machines):
- Tesseract (the default where it is available): through tesserocr's C API (its wheel holds
  libtesseract; one engine kept loaded, no process per image) with the `eng` data of
  Debian's `tesseract-ocr`. It read documents best in docs/benchmarks.md (scripts/eval_ocr.py).
- RapidOCR (the fallback where Tesseract's data is not installed): PP-OCRv4 ONNX models
  shipped inside the `rapidocr-onnxruntime` wheel; nothing is downloaded.
Neither needs a GPU. It reads pixels only, so it lives with the decoders.

Cheap on pictures without text, each engine its cheapest way (measured, benchmarks.md):
Tesseract's own page layout finds no text region in a photo in ~0.02 s, 30x less than a
detection pass, so it reads outright; RapidOCR first runs its detection on a small copy
(`MAX_CHECK_SIDE`), and recognition never runs where no text box is found.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # light to import: config.py asks `default_engine()` for a new index
    import numpy as np
    from PIL import Image

ENGINES = ("tesseract", "rapidocr")
"""The engines `--ocr` accepts besides 'off', in order of preference (measured)."""
ENGINE = "rapidocr"
"""Kept for callers of the first version: the fallback engine's name."""
MAX_CHECK_SIDE = 640
"""Longest side of the copy the pre-check detects text on."""
MAX_READ_SIDE = 1600
"""Longest side OCR reads at: a page of print at ~140 dpi; larger costs time, not words."""
MIN_SCORE = 0.6
"""Recognised lines under this confidence are dropped (mostly texture read as letters)."""
TESSDATA_GLOBS = (
    "/usr/share/tesseract-ocr/*/tessdata",  # Debian/Ubuntu `tesseract-ocr-eng`
    "/usr/share/tessdata",  # Fedora, Arch
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)
"""Where the `eng` model of a system Tesseract is looked for ($TESSDATA_PREFIX first)."""

_lock = threading.Lock()
_engine: Any = None
_tess_lock = threading.Lock()  # one Tesseract API, used by one thread at a time
_tess: Any = None


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


def tessdata() -> str | None:
    """The folder holding Tesseract's `eng.traineddata`, or None when it is not installed."""
    env = os.environ.get("TESSDATA_PREFIX")
    candidates = [env, os.path.join(env, "tessdata")] if env else []
    for pattern in TESSDATA_GLOBS:
        candidates += sorted(glob.glob(pattern), reverse=True)  # newest version first
    for folder in candidates:
        if folder and os.path.isfile(os.path.join(folder, "eng.traineddata")):
            return folder
    return None


def available(engine: str = "rapidocr") -> bool:
    """Whether `engine` can read here: its package is installed and (Tesseract) its `eng`
    data is found. Looked up without importing (cheap enough for every config load)."""
    if engine == "tesseract":
        return importlib.util.find_spec("tesserocr") is not None and tessdata() is not None
    if engine == "rapidocr":
        return importlib.util.find_spec("rapidocr_onnxruntime") is not None
    return False


def default_engine() -> str:
    """The engine a new index records: the first of `ENGINES` available here, else 'off'."""
    return next((e for e in ENGINES if available(e)), "off")


def why_engine(setting: str) -> str:
    """One line for `status`/`models`: the index's OCR setting and whether it runs here."""
    if setting == "off":
        return "off (index --ocr tesseract|rapidocr turns it on)"
    if not available(setting):
        return (
            f"{setting}, NOT AVAILABLE here: text in pictures is not read "
            f"(install it, or switch with index --ocr {default_engine()})"
        )
    if setting == "rapidocr" and not available("tesseract"):
        return "rapidocr (fallback: Tesseract, the more accurate engine, is not installed)"
    return setting


def _scaled(image: Image.Image, side: int) -> tuple[np.ndarray, float]:
    """RGB->BGR array no larger than `side`, and the factor back to the caller's pixels."""
    import numpy as np

    im = image.convert("RGB")
    scale = min(1.0, side / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    return np.asarray(im)[:, :, ::-1].copy(), 1.0 / scale


def has_text(image: Image.Image) -> bool:
    """Whether a text box is detected on a small copy (the pre-check; no recognition).
    Without RapidOCR there is no pre-check: every picture is read."""
    if not available("rapidocr"):
        return True
    arr, _ = _scaled(image, MAX_CHECK_SIDE)
    boxes, _ = _get()(arr, use_det=True, use_cls=False, use_rec=False)
    return bool(boxes is not None and len(boxes))


def read_lines(image: Image.Image, check: bool = True, engine: str = "rapidocr") -> list[Line]:
    """The lines of text in an image, top to bottom; [] when the pre-check finds none (the
    pre-check is RapidOCR's: Tesseract finds a textless picture empty faster by itself)."""
    if min(image.size) < 8:
        return []
    if check and engine == "rapidocr" and not has_text(image):
        return []
    lines = _tesseract(image) if engine == "tesseract" else _rapidocr(image)
    lines.sort(key=lambda ln: (ln.box[1], ln.box[0]))
    return lines


def _rapidocr(image: Image.Image) -> list[Line]:
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
    return lines


def _tesseract(image: Image.Image) -> list[Line]:
    """Tesseract's text lines (automatic page layout), confidence 0-100 scaled to 0-1."""
    global _tess
    import tesserocr

    im = image.convert("RGB")
    scale = min(1.0, MAX_READ_SIDE / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    back = 1.0 / scale
    level = tesserocr.RIL.TEXTLINE
    lines = []
    with _tess_lock:
        if _tess is None:
            _tess = tesserocr.PyTessBaseAPI(path=tessdata(), lang="eng")
        _tess.SetImage(im)
        _tess.Recognize()
        found = _tess.GetIterator()
        for r in tesserocr.iterate_level(found, level) if found is not None else ():
            try:  # a region Tesseract found but read nothing in (a picture) has no text
                text = " ".join((r.GetUTF8Text(level) or "").split())
            except RuntimeError:
                continue
            score = r.Confidence(level) / 100.0
            bbox = r.BoundingBox(level)
            if not text or bbox is None or score < MIN_SCORE:
                continue
            x0, y0, x1, y1 = (round(v * back) for v in bbox)
            lines.append(Line(text, [x0, y0, x1 - x0, y1 - y0], score))
        _tess.Clear()
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
