"""The map drawn: an HTML page that works offline (its script, style, points and small
thumbnails all inside the one file; the same script as the web app's map page), or a PNG
(Pillow: dots coloured by cluster, cluster names at their centres)."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import os
from pathlib import Path

from searchengine.atlas.build import MapResult
from searchengine.atlas.labels import OTHER
from searchengine.errors import UserError

STATIC = Path(__file__).resolve().parent.parent / "serve" / "static"
THUMBS = 1000
"""Pictures embedded in a written page at most (about 3 KB each)."""
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#fd8d3c",
]  # the same as map.js


def check_output(out: Path) -> None:
    """Refuse a target that cannot be written, before any work is done."""
    if out.suffix.lower() not in (".html", ".htm", ".png"):
        raise UserError(f"-o wants a .html or .png file, not '{out.name}'")
    if not out.parent.is_dir():
        raise UserError(f"no such folder: {out.parent}")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"cannot write {out}: permission denied")


def write(result: MapResult, out: Path, *, thumbs: int = THUMBS) -> Path:
    """Write `out` as HTML or PNG, by its extension."""
    check_output(out)
    try:
        if out.suffix.lower() == ".png":
            write_png(result, out)
        else:
            write_html(result, out, thumbs=thumbs)
    except OSError as exc:  # a full disk, a read-only or special file system
        with contextlib.suppress(OSError):
            out.with_name(out.name + ".tmp").unlink(missing_ok=True)
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def page_data(result: MapResult, *, thumbs: int = THUMBS) -> dict[str, object]:
    """The page's data: the map, each point's file URL, and up to `thumbs` pictures."""
    data = result.to_json()
    for point in data["points"]:  # type: ignore[union-attr]
        point["url"] = Path(point["path"]).as_uri()  # type: ignore[index]
    pictures: dict[str, str] = {}
    for p in result.points:
        if len(pictures) >= thumbs:
            break
        if p.type in ("image", "video"):
            found = _thumb(p.path, p.type)
            if found:
                pictures[str(p.id)] = found
    data["thumbs"] = pictures
    return data


def write_html(result: MapResult, out: Path, *, thumbs: int = THUMBS) -> None:
    data = json.dumps(page_data(result, thumbs=thumbs), ensure_ascii=False)
    # no "<" at all (JSON strings only): "</script" or "<!--<script" in a file name would
    # end the element early or swallow the page's script
    data = data.replace("<", "\\u003c")
    style = (STATIC / "map.css").read_text()
    script = (STATIC / "map.js").read_text()
    title = html.escape(f"searchengine map: {result.space}")
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<div id="bar"><b>searchengine map</b><span id="info"></span></div>
<div id="stage">
<canvas id="map" aria-label="Map of the collection"></canvas>
<div id="legend" aria-label="Clusters"></div>
<div id="tip" hidden></div>
</div>
<script type="application/json" id="map-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)


def write_png(result: MapResult, out: Path, size: int = 1600) -> None:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (size, size), "#fafafa")
    draw = ImageDraw.Draw(image)
    half = size / 2
    scale = half - 40
    r = 2 if len(result.points) > 5000 else 4
    centres: dict[int, list[float]] = {}
    for p in result.points:
        x, y = half + p.x * scale, half - p.y * scale
        colour = "#b0b0b0" if p.cluster == OTHER else PALETTE[p.cluster % len(PALETTE)]
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        if p.cluster != OTHER:
            c = centres.setdefault(p.cluster, [0.0, 0.0, 0.0])
            c[0] += x
            c[1] += y
            c[2] += 1
    font = ImageFont.load_default(size=22)
    for cid, (sx, sy, n) in centres.items():
        words = " · ".join(result.labels.get(cid, [])) or f"cluster {cid}"
        draw.text(
            (sx / n, sy / n),
            words,
            fill="#111",
            font=font,
            anchor="mm",
            stroke_width=3,
            stroke_fill="#ffffff",
        )
    head = f"{result.space} space, {len(result.points)} files"
    draw.text((12, 10), head, fill="#444", font=ImageFont.load_default(size=20))
    tmp = out.with_name(out.name + ".tmp")
    image.save(tmp, format="PNG")
    tmp.replace(out)


def _thumb(path: str, kind: str) -> str | None:
    """A small JPEG of an image or a video's first frame, as a data URL; None if unreadable."""
    from searchengine.thumbs import picture

    try:
        image = picture(path, 0.0, 160)
    except Exception:  # gone, or damaged: the point simply has no picture
        return None
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
