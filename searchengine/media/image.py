"""Images: one RGB `clip` segment per file, EXIF orientation applied, alpha on white.

Pillow identifies the format from the content, so a PNG named `.jpg` still decodes. The size
is checked from the header before any pixel is decoded (decompression bombs), and the image
is shrunk to `max_side` right away: CLIP only needs 224 px, and many images may be in flight.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from typing import Any

from PIL import Image, UnidentifiedImageError

from searchengine.errors import DecodeError
from searchengine.media.sniff import magic_type
from searchengine.types import Decoded, Segment

try:  # HEIC/HEIF (and AVIF on older Pillow) only when the optional plugin is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
except Exception:  # ImportError, or a broken native install: HEIC files then fail to decode
    pass

MAX_PIXELS = 100_000_000
"""Default decompression-bomb limit (width * height); `config.max_image_pixels` overrides it."""

MAX_SIDE = 384
"""Long side of the kept image: CLIP looks at 224 px on the short side, so 384 keeps 16:9
photos at about 224 and halves the pixels the preprocessing resizes, against 512.
`config.max_image_side` overrides it."""

WHITE = (255, 255, 255)

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_ORIENTATION = 0x0112
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011

# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FORMAT_NAMES = {"MPO": "jpeg"}  # phone "multi-picture" JPEGs are JPEGs to a user

# Errors Pillow and its plugins raise on damaged data; anything else is a bug worth seeing.
_CORRUPT = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    AttributeError,
)


def decode(path: str, config: Any) -> Decoded:
    """Decode an image file into one `clip` segment whose payload is a small RGB image."""
    max_pixels = getattr(config, "max_image_pixels", None) or MAX_PIXELS
    max_side = getattr(config, "max_image_side", None) or MAX_SIDE
    image, meta = open_image(path, max_pixels=int(max_pixels), max_side=int(max_side))
    segments = [Segment(space="clip", kind="image", payload=image)]
    setting = ocr_setting(config)
    read = ocr_segments(path, meta, int(max_pixels), setting) if setting != "off" else []
    if setting == "off" or read:  # what a later change of the setting must make again
        meta["ocr"] = setting
    segments += read
    return Decoded(file_type="image", segments=segments, meta=meta)


def ocr_setting(config: Any) -> str:
    """The index's OCR engine as it runs here: 'off' also when the recorded engine is not
    installed on this machine (then nothing is re-read until it is: see the indexer)."""
    from searchengine.media import ocr

    models = getattr(config, "models", None) or {}
    setting = models.get("ocr", "off")
    return setting if setting in ocr.ENGINES and ocr.available(setting) else "off"


def ocr_segments(
    path: str, meta: dict[str, Any], max_pixels: int, engine: str = "rapidocr"
) -> list[Segment]:
    """The text read in a picture, one `text`-space segment per block of lines, with its
    box in pixels of the upright image at full size."""
    from searchengine.media import ocr

    big, _ = open_image(path, max_pixels=max_pixels, max_side=ocr.MAX_READ_SIDE)
    full_w = int(meta.get("width") or big.width)
    back = full_w / big.width
    out = []
    for text, box in ocr.blocks(ocr.read_lines(big, engine=engine)):
        loc = {"box": [round(v * back) for v in box]}
        out.append(Segment(space="text", kind="ocr", text=text, payload=text, loc=loc))
    return out


def open_image(
    path: str, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE
) -> tuple[Image.Image, dict[str, Any]]:
    """(upright RGB image fitting `max_side`, metadata); raises DecodeError with the reason.

    Also usable for a query image (`similar FILE`), so both sides see the same pixels.
    Missing or unreadable files raise the usual OSError (FileNotFoundError, PermissionError).
    """
    try:
        im = Image.open(path)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except UnidentifiedImageError:
        raise DecodeError(_unidentified_reason(path)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"image too large: {exc}") from None
    except _CORRUPT as exc:
        raise DecodeError(f"truncated or corrupt image: {_reason(exc)}") from None
    with im:
        return _load(im, max_pixels, max_side)


def _load(im: Image.Image, max_pixels: int, max_side: int) -> tuple[Image.Image, dict[str, Any]]:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise DecodeError(f"truncated or corrupt image: size {width} x {height}")
    if width * height > max_pixels:  # from the header alone: nothing decoded yet
        raise DecodeError(
            f"image too large: {width} x {height} pixels (decompression-bomb limit {max_pixels})"
        )
    fmt = im.format or ""
    meta: dict[str, Any] = {"format": _FORMAT_NAMES.get(fmt, fmt.lower())}
    orientation = _read_exif(im, meta)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    meta["width"], meta["height"] = width, height  # as displayed, at full size
    try:
        if fmt in ("JPEG", "MPO"):
            # let libjpeg decode at 1/2, 1/4 or 1/8 scale: no full-size pixels for big photos
            scale = max_side / max(im.size)
            if scale < 1:
                im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))
        im.load()  # the first frame only, for GIF / animated WebP
        small = _shrink(_resizable(im), max_side)
        rgb = _flatten(small)
        if orientation in _TRANSPOSE:
            rgb = rgb.transpose(_TRANSPOSE[orientation])
        if rgb is im:  # never hand out the file-backed image object itself
            rgb = rgb.copy()
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"image too large: {exc}") from None
    except MemoryError:
        raise DecodeError(f"image too large: out of memory decoding {width} x {height}") from None
    except _CORRUPT as exc:
        raise DecodeError(f"truncated or corrupt image: {_reason(exc)}") from None
    return rgb, meta


def _unidentified_reason(path: str) -> str:
    """Tell a damaged image (right signature, unreadable header) from a non-image."""
    try:
        with open(path, "rb") as fh:
            magic = magic_type(fh.read(64))
    except OSError:
        magic = None
    if magic is not None and magic[0] == "image":
        return f"truncated or corrupt image: unreadable {magic[1].upper()} header"
    ext = os.path.splitext(path)[1].lower()
    what = f"this '{ext}' file" if ext else "this file"
    return f"not an image: no known image format in {what}"


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0].strip() if str(exc) else ""
    return text[:200] or type(exc).__name__


def _resizable(im: Image.Image) -> Image.Image:
    """A mode that resamples well and keeps transparency as an alpha channel.

    Palette images would be resized by nearest neighbour, and a `transparency` colour key
    stops meaning anything once pixels are blended, so both become RGBA/RGB first.
    """
    if im.mode in ("RGB", "L") and "transparency" not in im.info:
        return im
    if im.mode in ("RGBA", "LA"):
        return im
    if im.mode in ("P", "PA", "L", "RGB", "1"):
        has_alpha = im.mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if im.mode in ("RGBa", "La"):  # premultiplied alpha
        return im.convert("RGBA")
    if im.mode.startswith("I") or im.mode == "F":
        return _stretch_to_l(im)
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def _stretch_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit or float greyscale to 8 bits over its own range; convert() would clip to white."""
    im = im.convert("F")
    lo, hi = im.getextrema()
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return im.convert("L")
    scale = 255.0 / (hi - lo)
    return im.point(lambda v: (v - lo) * scale).convert("L")


def _shrink(im: Image.Image, max_side: int) -> Image.Image:
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return im


def _flatten(im: Image.Image) -> Image.Image:
    """RGB with any alpha composited onto white, as a viewer shows it on a page."""
    if im.mode in ("RGBA", "LA"):
        alpha = im.getchannel("A")
        background = Image.new("RGB", im.size, WHITE)
        background.paste(im.convert("RGB"), mask=alpha)
        return background
    return im if im.mode == "RGB" else im.convert("RGB")


# --- EXIF --------------------------------------------------------------------------------


def _read_exif(im: Image.Image, meta: dict[str, Any]) -> int:
    """Fill taken_at / camera / gps into `meta` and return the orientation (1 if none).

    EXIF is written by countless cameras and editors, often badly: every field is read on
    its own, and anything malformed is left out rather than failing the file.
    """
    try:
        exif = im.getexif()
    except Exception:
        return 1
    value = exif.get(_ORIENTATION, 1)  # only a proper integer counts, as in exif_transpose
    orientation = value if isinstance(value, int) and value in _TRANSPOSE else 1
    try:
        exif_ifd = exif.get_ifd(_EXIF_IFD)
    except Exception:
        exif_ifd = {}
    for getter, key in (
        (lambda: _taken_at(exif, exif_ifd), "taken_at"),
        (lambda: _camera(exif), "camera"),
        (lambda: _gps(exif.get_ifd(_GPS_IFD)), "gps"),
    ):
        try:
            value = getter()
        except Exception:
            continue
        if value:
            meta[key] = value
    return orientation


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).replace("\x00", " ").strip() if value is not None else ""


def _taken_at(exif: Any, exif_ifd: Any) -> str | None:
    """ISO 8601 from DateTimeOriginal (else DateTime), with the UTC offset when recorded."""
    original = _parse_exif_datetime(exif_ifd.get(_DATETIME_ORIGINAL))
    if original is not None:
        offset = _text(exif_ifd.get(_OFFSET_TIME_ORIGINAL))
        if offset:
            try:
                return datetime.fromisoformat(original.isoformat() + offset).isoformat()
            except ValueError:
                pass
        return original.isoformat()
    fallback = _parse_exif_datetime(exif.get(_DATETIME))
    return fallback.isoformat() if fallback is not None else None


def _parse_exif_datetime(value: Any) -> datetime | None:
    text = _text(value)[:19]  # "YYYY:MM:DD HH:MM:SS", sometimes followed by junk
    if not text:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d"):
        try:
            return datetime.strptime(text if fmt != "%Y:%m:%d" else text[:10], fmt)
        except ValueError:
            continue
    return None  # "0000:00:00 00:00:00" and friends


def _camera(exif: Any) -> str | None:
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    if make and model.lower().startswith(make.lower()):
        make = ""  # "Canon" + "Canon EOS 80D" reads as "Canon EOS 80D"
    return " ".join(f"{make} {model}".split()) or None


def _gps(gps: Any) -> dict[str, float] | None:
    """Signed decimal degrees from the GPS IFD's degree/minute/second rationals."""
    if not gps:
        return None
    lat = _degrees(gps.get(2), gps.get(1), "S")
    lon = _degrees(gps.get(4), gps.get(3), "W")
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None
    if lat == 0 and lon == 0:
        return None  # what cameras write when they had no fix
    return {"lat": round(lat, 7), "lon": round(lon, 7)}


def _degrees(dms: Any, ref: Any, negative: str) -> float | None:
    if dms is None:
        return None
    parts = [float(x) for x in (dms if isinstance(dms, (tuple, list)) else (dms,))][:3]
    if not parts or not all(math.isfinite(p) for p in parts):
        return None
    value = sum(p / 60**i for i, p in enumerate(parts))
    return -value if _text(ref).upper().startswith(negative) else value
