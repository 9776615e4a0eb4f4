"""Reading what is inside files: segment places (catalog format 4), PDFs page by page, OCR
of images, scanned pages and video frames, subtitle tracks."""

from __future__ import annotations

import io
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from searchengine import Engine
from searchengine.store.schema import SCHEMA_VERSION
from tests.conftest import write_corpus


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("fmt4")
    docs = write_corpus(base / "docs")
    with Engine(base / "index", create=True) as eng:
        eng.index([docs])
    return docs, base / "index"


def test_format_3_index_gains_segment_places_and_answers(docs_index, tmp_path: Path) -> None:
    """A catalog of format 3 (segments without `loc`) migrates on open and answers as before."""
    _, index = docs_index
    with Engine(index, readonly=True) as eng:
        before = [(h.path, h.score) for h in eng.search("planets and moons", k=3)]
    old = tmp_path / "v3"
    shutil.copytree(index, old)
    with sqlite3.connect(old / "catalog.db") as db:
        db.execute("ALTER TABLE segments DROP COLUMN loc")
        db.execute("PRAGMA user_version = 3")
    with Engine(old, readonly=True) as eng:  # a reader migrates a writable old index
        after = [(h.path, h.score) for h in eng.search("planets and moons", k=3)]
        hits = eng.search("Jupiter", k=1)
        assert hits and "page" not in hits[0].to_json()["segments"][0]
    assert [p for p, _ in after] == [p for p, _ in before]
    assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-4)
    with sqlite3.connect(old / "catalog.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        cols = [r[1] for r in db.execute("PRAGMA table_info(segments)")]
        assert "loc" in cols
        assert db.execute("SELECT count(*) FROM segments WHERE loc IS NOT NULL").fetchone()[0] == 0


# ---- what is inside: OCR, PDF pages, subtitles --------------------------------------------

SHOT_WORDS = "Invoice overdue: pay the harbour fees"
SCAN_WORDS = "Minutes of the lighthouse committee"
SLIDE_WORDS = "Quarterly roadmap review"
SUB_WORDS = "the ferry leaves at dawn tomorrow"
TRACK_WORDS = "lanterns glow over the quay"


def _mux_subtitles(video: Path, srt: Path, out: Path) -> None:
    """A video with a text subtitle track: the video's packets and the .srt's (FFmpeg reads
    an .srt as a subtitle stream) copied into one MKV."""
    import av

    with av.open(str(video)) as src, av.open(str(srt)) as subs, av.open(str(out), "w") as dst:
        pairs = [
            (src, src.streams.video[0], dst.add_stream_from_template(src.streams.video[0])),
            (
                subs,
                subs.streams.subtitles[0],
                dst.add_stream_from_template(subs.streams.subtitles[0]),
            ),
        ]
        for container, stream, target in pairs:
            for packet in container.demux(stream):
                if packet.dts is not None:
                    packet.stream = target
                    dst.mux(packet)


def _text_image(lines: list[str], size: tuple[int, int], font_px: int) -> Image.Image:
    """A screenshot-like picture: dark text on white, Pillow's own scalable font."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_px)
    y = font_px
    for line in lines:
        draw.text((font_px, y), line, fill=(20, 20, 20), font=font)
        y += int(font_px * 1.8)
    return image


@pytest.fixture(scope="module")
def inside(tmp_path_factory: pytest.TempPathFactory, test_models) -> dict[str, Path]:
    """One small library of each kind, indexed once (OCR on, the default)."""
    from tests.video_fixtures import make_slideshow, solid

    base = tmp_path_factory.mktemp("inside")
    root = base / "lib"
    root.mkdir()
    _text_image(["Harbour office", SHOT_WORDS], (640, 200), 28).save(root / "screenshot.png")
    Image.new("RGB", (320, 240), (90, 140, 60)).save(root / "meadow.png")  # no text at all
    _text_image([SCAN_WORDS, "held on the first Monday"], (612, 400), 26).save(
        root / "scan.pdf", resolution=72.0
    )
    slide = _text_image([SLIDE_WORDS], (640, 360), 48)
    make_slideshow(
        root / "talk.mp4", [solid((30, 30, 30)), slide, solid((30, 30, 30))], 3.0, size=(640, 360)
    )
    make_slideshow(root / "ferry.mkv", [solid((10, 60, 120))], 4.0)
    (root / "ferry.srt").write_text(
        f"1\n00:00:01,000 --> 00:00:02,500\n{SUB_WORDS.capitalize()}\n\n"
        "2\n00:00:03,000 --> 00:00:03,900\n<i>Goodbye</i>\n",
        encoding="utf-8",
    )
    make_slideshow(base / "plain.mkv", [solid((80, 20, 20))], 4.0)
    (base / "track.srt").write_text(
        f"1\n00:00:01,000 --> 00:00:02,500\n{TRACK_WORDS}\n", encoding="utf-8"
    )
    _mux_subtitles(base / "plain.mkv", base / "track.srt", root / "quay.mkv")
    make_slideshow(root / "storm.mkv", [solid((60, 60, 60))], 2.0)
    (root / "storm.srt").write_bytes(b"\x00\x01 not subtitles at all \xff\xfe")
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <</Type /Catalog>> endobj\n%%EOF")
    (root / "empty.pdf").write_bytes(_zero_page_pdf())
    (root / "locked.pdf").write_bytes(_encrypted_pdf())
    index = base / "index"
    with Engine(
        index,
        create=True,
        models={"clip": str(test_models["clip_config"]), "clap": str(test_models["clap"])},
        clip_pretrained=str(test_models["clip_checkpoint"]),
    ) as eng:
        eng.index([root])
    return {"root": root, "index": index}


def _zero_page_pdf() -> bytes:
    from pypdf import PdfWriter

    buf = io.BytesIO()
    PdfWriter().write(buf)
    return buf.getvalue()


def _encrypted_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="secret", algorithm="AES-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _top(eng: Engine, query: str, name: str):
    hits = eng.search(query, k=5)
    assert hits, query
    by_name = {Path(h.path).name: h for h in hits}
    assert name in by_name, (query, [Path(h.path).name for h in hits])
    return by_name[name]


def test_screenshot_is_found_by_its_words_with_the_box(inside) -> None:
    with Engine(inside["index"], readonly=True) as eng:
        hit = _top(eng, "harbour fees overdue", "screenshot.png")
        seg = next(s for s in hit.to_json()["segments"] if s["kind"] == "ocr")
        assert "harbour" in seg["text"].lower()
        x, y, w, h = seg["box"]
        assert 0 <= x < 640 and 0 <= y < 200 and 100 < w <= 640 and 0 < h < 200
        meadow = [h for h in eng.search("harbour fees overdue", k=10) if "meadow" in h.path]
        assert not meadow or all(s.kind != "ocr" for s in meadow[0].segments)
        assert hit.segments[0].where("image").startswith("box ")


def test_scanned_pdf_page_is_read_by_ocr_and_says_its_page(inside) -> None:
    with Engine(inside["index"], readonly=True) as eng:
        hit = _top(eng, "lighthouse committee minutes", "scan.pdf")
        seg = hit.to_json()["segments"][0]
        assert seg["page"] == 1 and "lighthouse" in seg["text"].lower()
        assert hit.segments[0].where("text") == "p. 1"


def test_slide_in_a_video_is_found_at_its_time(inside) -> None:
    with Engine(inside["index"], readonly=True) as eng:
        hit = _top(eng, "quarterly roadmap review", "talk.mp4")
        ocr = [s for s in hit.segments if s.kind == "ocr"]
        assert ocr, hit.segments
        assert 2.0 <= ocr[0].start <= 3.5 and 5.0 <= ocr[0].end <= 6.5  # on screen 3 s-6 s
        texts = [r.text for r in eng.catalog.file_segments(hit.file_id) if r.kind == "ocr"]
        assert len(texts) == 1  # shown in two sampled frames, stored once


def test_subtitle_line_is_a_transcript_line_with_its_time(inside) -> None:
    with Engine(inside["index"], readonly=True) as eng:
        hit = _top(eng, "ferry leaves at dawn", "ferry.mkv")
        seg = next(s for s in hit.segments if s.kind == "speech")
        assert (seg.start, seg.end) == (1.0, 2.5) and "ferry leaves" in seg.text.lower()
        meta = eng.catalog.file_meta([hit.file_id])[hit.file_id]
        assert meta["subtitles"] == "ferry.srt" and "speech" not in meta  # Whisper not run


def test_subtitle_track_inside_a_video_is_read(inside) -> None:
    with Engine(inside["index"], readonly=True) as eng:
        hit = _top(eng, "lanterns glow over the quay", "quay.mkv")
        seg = next(s for s in hit.segments if s.kind == "speech")
        assert (seg.start, seg.end) == (1.0, 2.5)
        meta = eng.catalog.file_meta([hit.file_id])[hit.file_id]
        assert meta["subtitles"] == "stream"


def test_bad_input_gets_a_recorded_reason(inside) -> None:
    with Engine(inside["index"], readonly=True) as eng:
        files = {Path(f.path).name: f for f in eng.catalog.all_files()}
        meta = eng.catalog.file_meta([files["storm.mkv"].id])[files["storm.mkv"].id]
    assert files["storm.mkv"].state == "indexed"  # the video indexes without its subtitles
    assert "storm.srt" in meta["subtitle_errors"][0]
    assert files["broken.pdf"].state == "failed" and "PDF" in files["broken.pdf"].reason
    assert files["empty.pdf"].state == "failed" and "no pages" in files["empty.pdf"].reason
    assert files["locked.pdf"].state == "failed" and "encrypted" in files["locked.pdf"].reason


def test_ocr_skips_pictures_without_text_and_huge_images_are_refused(tmp_path: Path) -> None:
    from searchengine.config import IndexConfig
    from searchengine.errors import DecodeError
    from searchengine.media import decode_file, ocr

    assert not ocr.has_text(Image.new("RGB", (400, 300), (90, 140, 60)))
    assert ocr.read_lines(Image.new("RGB", (400, 300), (250, 250, 250))) == []
    huge = tmp_path / "huge.png"
    Image.new("1", (12000, 12000)).save(huge)  # 144 Mpx: over the decompression limit
    with pytest.raises(DecodeError):
        decode_file(str(huge), IndexConfig())
    config = IndexConfig()
    config.models["ocr"] = "off"
    shot = tmp_path / "shot.png"
    _text_image([SHOT_WORDS], (640, 120), 28).save(shot)
    assert [s.kind for s in decode_file(str(shot), config).segments] == ["image"]


# ---- the OCR engine: chosen by measurement, recorded per index -----------------------------


def test_engine_default_is_tesseract_where_installed_else_rapidocr(monkeypatch) -> None:
    from searchengine.config import IndexConfig
    from searchengine.media import ocr

    assert ocr.tessdata() is not None  # Makefile sysdeps installs tesseract-ocr
    assert ocr.default_engine() == "tesseract" == IndexConfig().models["ocr"]
    assert ocr.why_engine("tesseract") == "tesseract"
    monkeypatch.setattr(ocr, "tessdata", lambda: None)  # a machine without Tesseract's data
    assert not ocr.available("tesseract")
    assert ocr.default_engine() == "rapidocr" == IndexConfig().models["ocr"]
    assert "fallback" in ocr.why_engine("rapidocr")
    assert "NOT AVAILABLE" in ocr.why_engine("tesseract")
    # an index made with Tesseract keeps it (config.json): here it reads nothing, says so
    cfg = IndexConfig.load_dict({"models": {"ocr": "tesseract"}})
    assert cfg.models["ocr"] == "tesseract"
    from searchengine.media.image import ocr_setting

    assert ocr_setting(cfg) == "off"


@pytest.mark.parametrize("engine", ["tesseract", "rapidocr"])
def test_each_engine_reads_a_screenshot_with_its_box(engine: str, tmp_path: Path) -> None:
    from searchengine.config import IndexConfig
    from searchengine.media import decode_file

    shot = tmp_path / "shot.png"
    _text_image(["Harbour office", SHOT_WORDS], (640, 200), 28).save(shot)
    config = IndexConfig()
    config.models["ocr"] = engine
    decoded = decode_file(str(shot), config)
    read = [s for s in decoded.segments if s.kind == "ocr"]
    assert read and "harbour fees" in " ".join(s.text.lower() for s in read)
    x, y, w, h = read[0].loc["box"]
    assert 0 <= x < 100 and 0 <= y < 100 and 300 < w <= 640 and 0 < h < 200
    assert decoded.meta["ocr"] == engine
    from searchengine.media import ocr

    # read outright (the pre-check passed a picture): nothing found is no lines, no error
    assert ocr.read_lines(Image.new("RGB", (400, 300), (90, 140, 60)), False, engine) == []


def test_switching_engine_rereads_only_files_with_text_videos_too(
    inside, tmp_path, monkeypatch
) -> None:
    """The engine is recorded per file where text was read (videos too, while frames
    stream): another engine re-reads those files; textless ones stay as they were; 'off'
    removes the text read in a video's frames. On a machine without the index's engine
    nothing is re-read."""
    from searchengine.errors import UserError
    from searchengine.media import ocr

    index = tmp_path / "index"
    shutil.copytree(inside["index"], index)

    def state() -> dict[str, tuple[list[int], dict, list[str]]]:
        with Engine(index, readonly=True) as eng:
            files = {Path(f.path).name: f.id for f in eng.catalog.all_files()}
            metas = eng.catalog.file_meta(files.values())
            out = {}
            for name, fid in files.items():
                segs = eng.catalog.file_segments(fid)
                ocr_text = [s.text or "" for s in segs if s.kind == "ocr"]
                out[name] = ([s.id for s in segs], metas.get(fid) or {}, ocr_text)
            return out

    before = state()
    assert before["talk.mp4"][1]["ocr"] == "tesseract"  # recorded after the frames streamed
    assert "ocr" not in before["meadow.png"][1]
    with monkeypatch.context() as m:
        m.setattr(ocr, "tessdata", lambda: None)  # moved to a machine without Tesseract
        with Engine(index) as eng:
            eng.index([inside["root"]])
        assert state() == before  # the text read stays, nothing re-read
        with pytest.raises(UserError, match="not installed"):
            Engine(tmp_path / "new", create=True, models={"ocr": "tesseract"})
    with Engine(index, models={"ocr": "rapidocr"}) as eng:
        eng.index([inside["root"]])
    after = state()
    for name in ("screenshot.png", "talk.mp4", "scan.pdf"):
        assert after[name][0] != before[name][0], name  # read again
    assert after["screenshot.png"][1]["ocr"] == after["talk.mp4"][1]["ocr"] == "rapidocr"
    assert any("roadmap" in t.lower() for t in after["talk.mp4"][2])
    for name in ("meadow.png", "ferry.mkv", "quay.mkv"):  # no text in their pixels
        assert after[name][0] == before[name][0], name
    with Engine(index, models={"ocr": "off"}) as eng:
        eng.index([inside["root"]])
    off = state()
    assert off["talk.mp4"][1]["ocr"] == "off" and off["talk.mp4"][2] == []
    assert off["screenshot.png"][2] == []
    with pytest.raises(UserError, match="--ocr wants"):
        Engine(index, models={"ocr": "abbyy"})
