"""Text documents: bytes to str without crashing, markup stripped, chunks with char offsets."""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import time
from html.parser import HTMLParser
from typing import Any

from searchengine.errors import DecodeError, Skip
from searchengine.types import Decoded, Segment

HTML_EXT = {".html", ".htm", ".xhtml"}

logging.getLogger("pypdf").setLevel(logging.ERROR)  # per-page font notes are not our output


def bytes_to_str(data: bytes) -> tuple[str, str]:
    """(text, encoding): BOMs honoured, UTF-8 tried first, then a detected charset."""
    for bom, enc in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
        (codecs.BOM_UTF32_LE, "utf-32"),
    ):
        if data.startswith(bom):
            return data.decode(enc, errors="replace"), enc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        matches = list(from_bytes(data[: 1 << 20]))
        if matches:
            # ties are common on short text: prefer the most widespread legacy encodings
            rank = {"cp1252": 0, "latin_1": 1, "iso8859_15": 2}
            best = min(matches, key=lambda m: (m.chaos, -m.coherence, rank.get(m.encoding, 9)))
            return data.decode(best.encoding, errors="replace"), best.encoding
    except Exception:
        pass
    return data.decode("utf-8", errors="replace"), "utf-8 (with replacements)"


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, one block per line, scripts and styles dropped."""

    BLOCK = {
        "p",
        "div",
        "br",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "pre",
        "table",
        "dt",
        "dd",
        "blockquote",
        "title",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        if tag == "title":
            self._in_title = True
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template") and self._skip:
            self._skip -= 1
        if tag == "title":
            self._in_title = False
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data
        self.parts.append(data)

    def text(self) -> str:
        joined = "".join(self.parts)
        joined = re.sub(r"[ \t\r\f\v]+", " ", joined)
        return re.sub(r"\n\s*\n+", "\n\n", joined).strip()


def html_to_text(markup: str) -> tuple[str, str]:
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # html.parser is lenient, but never let markup crash a run
        pass
    return parser.text(), parser.title.strip()


PDF_PAGE_CONTENT_MAX = 2_000_000
"""Inflated bytes of page content past which a page's text is not extracted. Text pages hold
5-500 kB. pypdf's text extraction grows faster than linearly (1 MB of text operators: 0.8 s
of CPU, 3.9 MB: 8 s), 150 kB of Flate data inflates to 64 MB of them, and one stream can be
shown on every page."""

PDF_TIME_BUDGET_S = 60.0
"""Seconds of text extraction per PDF; later pages are left out (a 300-page book takes a
few seconds), so that no document holds up an index run for long."""


PDF_OCR_SCALE = 2.0
"""Rendering scale (x 72 dpi) of a page without a text layer for OCR: 144 dpi."""


def pdf_to_text(data: bytes, budget_s: float = PDF_TIME_BUDGET_S) -> tuple[str, dict[str, object]]:
    """(text of every readable page, metadata); DecodeError when no page can be read."""
    pages, meta = pdf_pages(data, budget_s)
    return "\n\n".join(text for _, text in pages), meta


def pdf_pages(
    data: bytes, budget_s: float = PDF_TIME_BUDGET_S, ocr: str = "off"
) -> tuple[list[tuple[int, str]], dict[str, object]]:
    """([(1-based page number, its text)], metadata); DecodeError when no page can be read.

    pypdf reads the structure (encryption, page count, the size of each page's content, so
    a content bomb is refused before parsing); pypdfium2 extracts the text, keeping the
    spaces between words (measured in docs/benchmarks.md: 99 % real words against 56-80 %
    for pypdf, 10x faster). A page without a text layer is rendered and read by OCR when
    `ocr` is on. A damaged or oversized page costs its own text only: it is counted in
    `meta["pages_unread"]` and the rest of the document is still indexed.
    """
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception as exc:
                raise DecodeError("encrypted PDF") from exc
            if not opened:  # PasswordType.NOT_DECRYPTED: a password is needed
                raise DecodeError("encrypted PDF (needs a password)")
        pages = reader.pages
        count = len(pages)
        meta: dict[str, object] = {"pages": count}
        try:
            if reader.metadata and reader.metadata.title:
                meta["title"] = str(reader.metadata.title)
        except Exception:  # a damaged info dictionary costs the title only
            pass
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"unreadable PDF: {_first_line(exc)}") from exc
    if count == 0:
        raise DecodeError("PDF has no pages")
    try:
        import pypdfium2

        doc = pypdfium2.PdfDocument(data, password="" if reader.is_encrypted else None)
    except Exception as exc:
        raise DecodeError(f"unreadable PDF: {_first_line(exc)}") from exc
    try:
        return _read_pages(reader, doc, count, meta, budget_s, ocr)
    finally:
        doc.close()


def _read_pages(
    reader: Any, doc: Any, count: int, meta: dict[str, object], budget_s: float, ocr: str
) -> tuple[list[tuple[int, str]], dict[str, object]]:
    pages = reader.pages
    texts: list[tuple[int, str]] = []
    errors: list[str] = []
    scanned = 0
    deadline = time.monotonic() + budget_s
    for number in range(count):
        if time.monotonic() > deadline:
            errors.append(f"pages {number + 1}-{count} left out after {budget_s:.0f} s")
            break
        try:
            page = pages[number]
            content = page.get_contents()
            size = len(content.get_data()) if content is not None else 0
            if size > PDF_PAGE_CONTENT_MAX:
                errors.append(f"page {number + 1}: {size / 1e6:.0f} MB of content")
                continue
            if number >= len(doc):
                raise ValueError("page missing")
            text = doc[number].get_textpage().get_text_range().replace("\r\n", "\n")
            if not text.strip():
                scanned += 1
                text = _ocr_page(doc[number], ocr) if ocr != "off" else text
            texts.append((number + 1, text))
        except Exception as exc:
            errors.append(f"page {number + 1}: {_first_line(exc)}")
    if scanned:  # pages without a text layer: a change of the OCR setting redoes them
        meta["ocr"] = ocr
        meta["pages_without_text"] = scanned
    unread = count - len(texts)
    if unread:
        meta["pages_unread"] = unread
        meta["pdf_errors"] = errors[:3]
    if errors and not any(t.strip() for _, t in texts):
        raise DecodeError(f"unreadable PDF: {errors[0]}")
    return texts, meta


def _ocr_page(page: Any, engine: str) -> str:
    """The text of a page without a text layer (a scan), read from its rendering."""
    from searchengine.media import ocr

    image = page.render(scale=PDF_OCR_SCALE).to_pil()
    return "\n\n".join(text for text, _ in ocr.blocks(ocr.read_lines(image, engine=engine)))


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def chunk_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Overlapping [start, end) spans of about `size` chars, cut at paragraph, sentence or word
    boundaries when one is near, stripped of surrounding whitespace."""
    n = len(text)
    spans: list[tuple[int, int]] = []
    start = 0
    overlap = max(0, min(overlap, size // 2))
    while start < n:
        end = min(start + size, n)
        if end < n:
            floor = start + int(size * 0.6)
            for sep in ("\n\n", "\n", ". ", " "):
                cut = text.rfind(sep, floor, end)
                if cut != -1:
                    end = cut + len(sep)
                    break
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            spans.append((s, e))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        space = text.find(" ", nxt, end)  # begin the overlap on a word boundary
        start = space + 1 if space != -1 else nxt
    return spans


def decode_text(
    path: str, size_limit: int, chunk_chars: int, overlap: int, ocr: str = "off"
) -> Decoded:
    """Read a text document and cut it into `text`-space chunk segments."""
    size = os.path.getsize(path)
    if size > size_limit:
        raise Skip(
            f"text file of {size / 1e6:.1f} MB is over the {size_limit / 1e6:.0f} MB limit "
            "(raise max_text_mb in the index config to include it)"
        )
    with open(path, "rb") as fh:
        data = fh.read()
    ext = os.path.splitext(path)[1].lower()
    meta: dict[str, object] = {}
    if data.startswith(b"%PDF-"):
        return _decode_pdf(data, chunk_chars, overlap, ocr)
    else:
        text, meta["encoding"] = bytes_to_str(data)
        text = text.replace("\x00", "")
        if ext in HTML_EXT or text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
            text, title = html_to_text(text)
            if title:
                meta["title"] = title
    if not text.strip():
        raise Skip("no text content")
    meta["chars"] = len(text)
    segs = [
        Segment(space="text", kind="chunk", start=s, end=e, text=text[s:e], payload=text[s:e])
        for s, e in chunk_spans(text, chunk_chars, overlap)
    ]
    return Decoded(file_type="text", segments=segs, meta=meta)


def _decode_pdf(data: bytes, chunk_chars: int, overlap: int, ocr: str) -> Decoded:
    """A PDF cut into chunks page by page: each chunk knows its page (`loc`), its offsets
    count in the whole document's text (pages joined by a blank line)."""
    pages, meta = pdf_pages(data, ocr=ocr)
    segs: list[Segment] = []
    base = 0
    for number, page_text in pages:
        for s, e in chunk_spans(page_text, chunk_chars, overlap):
            piece = page_text[s:e]
            segs.append(
                Segment(
                    space="text",
                    kind="chunk",
                    start=base + s,
                    end=base + e,
                    text=piece,
                    payload=piece,
                    loc={"page": number},
                )
            )
        base += len(page_text) + 2
    if not segs:
        raise Skip(
            "no text content (a scanned PDF: OCR is off)" if ocr == "off" else "no text content"
        )
    meta["chars"] = max(0, base - 2)
    return Decoded(file_type="text", segments=segs, meta=meta)
