"""Compare PDF text extractors on real PDFs whose text is also known from HTML.

Word-boundary correctness: the share of the words an extractor yields that are real words
of the same document (its HTML version's vocabulary); glued words ("Therearethreeways")
and split ones ("pack ages") are not. Recall: the share of the HTML vocabulary found.
Speed: seconds per page (median of `--repeat` runs).

    python scripts/bench_pdf_text.py samples/docs/debian-faq samples/docs/maint-guide
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

WORD = re.compile(r"[a-z]{3,}")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def html_vocab(folder: Path) -> set[str]:
    from searchengine.media.text import html_to_text

    vocab: set[str] = set()
    for path in folder.glob("*.html"):
        vocab |= set(words(html_to_text(path.read_text(errors="replace"))[0]))
    return vocab


def pypdf_plain(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(io.BytesIO(data)).pages]


def pypdf_layout(data: bytes) -> list[str]:
    from pypdf import PdfReader

    pages = PdfReader(io.BytesIO(data)).pages
    return [p.extract_text(extraction_mode="layout") or "" for p in pages]


def pdfium(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)
    try:
        return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()


def pdfminer(data: bytes) -> list[str]:
    from pdfminer.high_level import extract_text

    return extract_text(io.BytesIO(data)).split("\f")


EXTRACTORS: dict[str, Callable[[bytes], list[str]]] = {
    "pypdf": pypdf_plain,
    "pypdf-layout": pypdf_layout,
    "pypdfium2": pdfium,
    "pdfminer.six": pdfminer,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="folders with one PDF and its HTML")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print("| extractor | document | pages | words | real words | HTML vocab found | s/page |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for folder in args.folders:
        pdf = next(folder.glob("*.pdf"))
        data = pdf.read_bytes()
        vocab = html_vocab(folder)
        for name, fn in EXTRACTORS.items():
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                pages = fn(data)
                times.append(time.perf_counter() - t0)
            found = words("\n".join(pages))
            real = sum(w in vocab for w in found) / max(1, len(found))
            recall = len(set(found) & vocab) / max(1, len(vocab))
            per_page = statistics.median(times) / max(1, len(pages))
            print(
                f"| {name} | {pdf.name} | {len(pages)} | {len(found)} | {real:.1%} | "
                f"{recall:.1%} | {per_page:.4f} |"
            )


if __name__ == "__main__":
    main()
