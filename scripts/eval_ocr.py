"""Evaluate OCR engines on real material whose text is known: word accuracy, search
success (an image whose text holds a 3-word phrase is in the top 3 of BM25 over all the
images' OCR text, FTS5 with the catalog's tokenizer), seconds per image, and the cost of
the text pre-check on pictures with and without text against reading them outright.
Both engines run as the index runs them (`media/ocr.py`: Tesseract through tesserocr with
one engine kept loaded, RapidOCR's ONNX models), lines under the confidence floor dropped.

Material (fetch with `python scripts/fetch_samples.py ocr`): OCRmyPDF's test scans
(`linn.png`, a two-column scanned leaflet, with its transcript `linn.txt`), and, as a
supplement, pages of Debian's `debian-faq.en.pdf` rendered at 144 dpi (truth: the PDF's
text layer); pictures without text: the photos of the `images` set.

    OMP_NUM_THREADS=2 python scripts/eval_ocr.py --samples samples --pages 3 --photos 6
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path

from PIL import Image

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def word_accuracy(truth: str, got: str) -> float:
    """Share of the truth's words (with repeats) found in the OCR output."""
    t, g = Counter(words(truth)), Counter(words(got))
    return sum(min(n, g[w]) for w, n in t.items()) / max(1, sum(t.values()))


def engine_read(engine: str, image: Image.Image) -> str:
    """The text the index would store for `image` (no pre-check: these all hold text)."""
    from searchengine.media import ocr

    return "\n".join(line.text for line in ocr.read_lines(image, check=False, engine=engine))


def tesseract_cli(image: Image.Image) -> str:
    """Tesseract as a process per image (what pytesseract does), for its overhead."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    out = subprocess.run(
        ["tesseract", "stdin", "stdout", "-l", "eng"],
        input=buf.getvalue(),
        capture_output=True,
        env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return out.stdout.decode("utf-8", "replace")


ENGINES = {
    "tesseract": lambda im: engine_read("tesseract", im),
    "rapidocr": lambda im: engine_read("rapidocr", im),
    "tesseract-cli": tesseract_cli,
}


def material(samples: Path, pages: int) -> list[tuple[str, Image.Image, str]]:
    """(name, image at OCR size, truth text)."""
    import pypdfium2

    from searchengine.media.ocr import MAX_READ_SIDE

    def fit(im: Image.Image) -> Image.Image:
        im = im.convert("RGB")
        im.thumbnail((MAX_READ_SIDE, MAX_READ_SIDE))
        return im

    out = []
    scans = samples / "ocr"
    out.append(("linn.png", fit(Image.open(scans / "linn.png")), (scans / "linn.txt").read_text()))
    pdf = pypdfium2.PdfDocument(str(samples / "docs" / "debian-faq" / "debian-faq.en.pdf"))
    step = max(1, (len(pdf) - 2) // pages)
    for i in range(2, len(pdf), step)[:pages]:
        page = pdf[i]
        truth = page.get_textpage().get_text_range()
        out.append((f"debian-faq p.{i + 1}", fit(page.render(scale=2.0).to_pil()), truth))
    return out


def phrases(truth: str) -> list[str]:
    w = [x for x in words(truth) if len(x) > 2]
    return [" ".join(w[int(len(w) * f) : int(len(w) * f) + 3]) for f in (0.25, 0.5, 0.75)]


def search_success(texts: dict[str, str], truths: dict[str, str]) -> float:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(name, body, tokenize='porter unicode61')")
    db.executemany("INSERT INTO t VALUES (?, ?)", list(texts.items()))
    ok = total = 0
    for name, truth in truths.items():
        for phrase in phrases(truth):
            query = " ".join(f'"{w}"' for w in phrase.split())
            top = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 3",
                    (f"body:({query})",),
                )
            ]
            ok += name in top
            total += 1
    return ok / max(1, total)


def precheck_cost(samples: Path, n: int, with_text: list[Image.Image], engine: str) -> None:
    """Seconds per picture: the pre-check on photos (textless or nearly) and on pages with
    text; against that, `engine` reading the photos outright (what the pre-check saves)."""
    from searchengine.media import ocr

    photos = (
        sorted((samples / "images").rglob("*.jpg"))[:n]
        + sorted((samples / "images").rglob("*.png"))[:n]
    )
    ims = []
    for path in photos:
        im = Image.open(path).convert("RGB")
        im.thumbnail((ocr.MAX_READ_SIDE, ocr.MAX_READ_SIDE))
        ims.append(im)
    ocr.has_text(with_text[0])  # models loaded outside the timing
    check, found, full, lines = [], 0, [], 0
    for im in ims:
        t0 = time.perf_counter()
        found += ocr.has_text(im)
        check.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lines += len(ocr.read_lines(im, check=False, engine=engine))
        full.append(time.perf_counter() - t0)
    texty = []
    for im in with_text:
        t0 = time.perf_counter()
        ocr.has_text(im)
        texty.append(time.perf_counter() - t0)
    med = statistics.median
    print(
        f"\npre-check (RapidOCR detection, longest side {ocr.MAX_CHECK_SIDE}): {len(ims)} photos, "
        f"median {med(check):.3f} s, {len(ims) - found} skipped as textless; pages with text: "
        f"median {med(texty):.3f} s before recognition starts"
    )
    print(
        f"{engine} reading the same photos outright: median {med(full):.3f} s per photo, "
        f"{lines} lines kept; the pre-check costs {med(check) / max(med(full), 1e-9):.1f}x that"
    )
    print(f"photos: {', '.join(p.name for p in photos)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=Path, default=Path("samples"))
    ap.add_argument("--pages", type=int, default=6)
    ap.add_argument("--photos", type=int, default=10)
    ap.add_argument(
        "--engines",
        default="tesseract,rapidocr,tesseract-cli" if shutil.which("tesseract") else "rapidocr",
        help="tesseract (tesserocr, the index's default), rapidocr (the fallback), "
        "tesseract-cli (a process per image: its overhead)",
    )
    args = ap.parse_args()
    from searchengine.media import ocr

    chosen = ocr.default_engine()
    print(f"the engine a new index gets here: {chosen}")
    items = material(args.samples, args.pages)
    truths = {name: truth for name, _, truth in items}
    for engine in args.engines.split(","):  # load the models outside the timing
        ENGINES[engine](items[0][1].resize((200, 200)))
    print("| engine | image | word accuracy | s/image |")
    print("|---|---|---:|---:|")
    summary = []
    for engine in args.engines.split(","):
        texts, accs, secs = {}, [], []
        for name, image, truth in items:
            t0 = time.perf_counter()
            texts[name] = ENGINES[engine](image)
            secs.append(time.perf_counter() - t0)
            accs.append(word_accuracy(truth, texts[name]))
            print(f"| {engine} | {name} | {accs[-1]:.1%} | {secs[-1]:.2f} |")
        summary.append(
            f"| {engine} | {statistics.mean(accs):.1%} | {search_success(texts, truths):.1%} | "
            f"{statistics.median(secs):.2f} |"
        )
    print("\n| engine | mean word accuracy | search success (top 3) | median s/image |")
    print("|---|---:|---:|---:|")
    print("\n".join(summary))
    precheck_cost(args.samples, args.photos, [im for _, im, _ in items], chosen)


if __name__ == "__main__":
    main()
