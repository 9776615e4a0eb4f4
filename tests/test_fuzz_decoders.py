"""Fuzzed decoders: mutated real files of ten formats never crash, hang or raise anything but
Skip/DecodeError; the harness itself tells a crash, a hang and an exception apart.

The fast subset uses seeds written here (scripts/fuzz_decoders.py `generated_seeds`), not the
fetched sample sets, so it runs offline. The full campaign is in docs/fuzz.md.
"""

from __future__ import annotations

import importlib.util
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO


def _load_fuzzer():
    """scripts/fuzz_decoders.py as a module (registered first: its dataclasses need that)."""
    spec = importlib.util.spec_from_file_location(
        "fuzz_decoders", REPO / "scripts" / "fuzz_decoders.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_decoders"] = module
    spec.loader.exec_module(module)
    return module


fz = _load_fuzzer()

CASES_PER_FORMAT = 20


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    return fz.build_seeds(tmp_path_factory.mktemp("fuzz-seeds"), None, fz.FORMATS)


def test_every_format_has_seeds(seeds: dict[str, list]) -> None:
    assert set(seeds) == set(fz.FORMATS)
    for fmt, found in seeds.items():
        assert found, f"no {fmt} seed could be written"
        for seed in found:
            assert seed.path.stat().st_size > 0


def test_fast_subset_records_every_case(seeds: dict[str, list], tmp_path: Path) -> None:
    cases = fz.make_cases(seeds, CASES_PER_FORMAT, seed=20240601, work=tmp_path)
    assert len(cases) == CASES_PER_FORMAT * len(fz.FORMATS)
    rows = fz.run_campaign(cases, fz.Options(timeout=60.0, jobs=2))
    outcomes = Counter(r["outcome"] for r in rows)
    bad = [r for r in rows if r["outcome"] not in ("indexed", "failed", "skipped")]
    assert not bad, "\n".join(
        f"{r['id']} {r['mutation']}: {r['outcome']} {r.get('exc')} {r.get('reason')} "
        f"{r.get('where', '')}"
        for r in bad
    )
    for row in rows:
        if row["outcome"] == "indexed":
            assert row["segments"] > 0
        else:
            assert row["reason"], row
    unchanged = [r for r in rows if r["mutation"].startswith("none")]
    assert len(unchanged) == sum(len(v) for v in seeds.values())
    assert all(r["outcome"] == "indexed" for r in unchanged), unchanged
    # the mutations do damage: some cases fail, and every format still indexes some
    assert outcomes["failed"] + outcomes["skipped"] >= len(rows) // 10
    for fmt in fz.FORMATS:
        assert any(r["format"] == fmt and r["outcome"] == "indexed" for r in rows)


FAKE_DECODER = """
import os, signal, time
import numpy as np
from searchengine.media import decode_file
from searchengine.types import Decoded, Segment

def decode(path, config):
    name = os.path.basename(path)
    if name.startswith("segv"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("sleep"):
        time.sleep(600)
    if name.startswith("keyerror"):
        return {}["missing"]
    if name.startswith("bomb"):
        return bytearray(8 << 30)
    if name.startswith("nan"):
        seg = Segment("clap", "sound", 0.0, 1.0, payload=np.full(10, np.nan, np.float32))
        return Decoded("audio", stream=iter([[seg]]))
    return decode_file(path, config)
"""


def test_harness_tells_crash_hang_exception_and_memory_apart(
    seeds: dict[str, list], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fakedec.py").write_text(FAKE_DECODER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    png = seeds["png"][0].path.read_bytes()
    cases = []
    for name in ("segv", "ok1", "sleep", "ok2", "keyerror", "bomb", "nan", "ok3"):
        path = tmp_path / f"{name}.png"
        path.write_bytes(png)
        cases.append(fz.Case(name, "png", "seed.png", "none", ".png", len(png), str(path)))
    opts = fz.Options(timeout=5.0, jobs=2, mem_mb=1024, decoder="fakedec:decode")
    rows = {r["id"]: r for r in fz.run_campaign(cases, opts)}
    assert rows["segv"]["outcome"] == "crash" and "SIGSEGV" in rows["segv"]["reason"]
    assert rows["sleep"]["outcome"] == "hang" and rows["sleep"]["seconds"] >= 5.0
    assert rows["keyerror"]["outcome"] == "unexpected" and rows["keyerror"]["exc"] == "KeyError"
    assert rows["bomb"]["outcome"] == "unexpected" and rows["bomb"]["exc"] == "MemoryError"
    assert rows["nan"]["outcome"] == "unexpected" and "malformed" in rows["nan"]["reason"]
    for ok in ("ok1", "ok2", "ok3"):  # a fresh worker carries on after each death
        assert rows[ok]["outcome"] == "indexed" and rows[ok]["segments"] == 1


def test_cases_are_reproducible_from_the_seed(seeds: dict[str, list], tmp_path: Path) -> None:
    small = {fmt: seeds[fmt] for fmt in ("png", "pdf")}
    first = fz.make_cases(small, 12, seed=5, work=tmp_path / "a")
    again = fz.make_cases(small, 12, seed=5, work=tmp_path / "b")
    other = fz.make_cases(small, 12, seed=6, work=tmp_path / "c")
    assert [c.mutation for c in first] == [c.mutation for c in again]

    def data(cases: list) -> list[bytes]:
        return [Path(c.path).read_bytes() for c in cases]

    assert data(first) == data(again)
    assert data(first) != data(other)


def test_checksum_repair_lets_damage_through(seeds: dict[str, list]) -> None:
    png = bytearray(seeds["png"][0].path.read_bytes())
    png[40] ^= 0xFF  # inside IHDR or the first data chunk: its CRC no longer matches
    fixed = fz.repair_png_crcs(bytes(png))
    pos = 8
    while pos + 12 <= len(fixed):
        length = int.from_bytes(fixed[pos : pos + 4], "big")
        end = pos + 8 + length
        assert zlib.crc32(fixed[pos + 4 : end]) == int.from_bytes(fixed[end : end + 4], "big")
        pos = end + 4
    ogg = seeds["ogg"][0].path.read_bytes()
    zeroed = bytearray(ogg)
    pos = zeroed.find(b"OggS")
    pages = 0
    while pos != -1:
        zeroed[pos + 22 : pos + 26] = b"\0\0\0\0"
        pages += 1
        pos = zeroed.find(b"OggS", pos + 4)
    assert pages > 1 and bytes(zeroed) != ogg
    assert fz.repair_ogg_crcs(bytes(zeroed)) == ogg


# --- crafted hostile files, and the decoder fixes they drove ------------------------------

EXPECTED = {  # crafted file -> (outcome, words in the reason)
    "png-400mpx-header": ("failed", "too large"),
    "gif-65535-square": ("failed", "too large"),
    "jpeg-65500-square": ("failed", "too large"),
    "webp-16384-square": ("failed", "too large"),
    "wav-1hz": ("failed", "sample rate of 1 Hz"),
    "wav-4gb-declared": ("indexed", ""),
    "wav-65535-channels": ("failed", "audio"),
    "mkv-1hz-audio": ("indexed", ""),
    "pdf-content-bomb-20-pages": ("failed", "MB of content"),
    "pdf-page-tree-cycle": ("failed", "cyclic"),
    "pdf-deep-nesting": ("indexed", ""),  # pypdfium2 reads the "deep" after the nesting
    "pdf-one-bad-page": ("indexed", ""),
}
# png-100mpx-zeros (indexed, by design: 4-9 s and 800 MB) and pdf-slow-pages (the 60 s
# budget) are in the full campaign only


def test_crafted_files_fail_fast_with_a_reason(seeds: dict[str, list], tmp_path: Path) -> None:
    assert set(EXPECTED) <= set(fz.CRAFTED)
    cases = fz.crafted_cases(tmp_path, seeds, EXPECTED)
    assert len(cases) == len(EXPECTED)
    rows = fz.run_campaign(cases, fz.Options(timeout=60.0, jobs=2))
    for row in rows:
        outcome, words = EXPECTED[row["id"].removeprefix("crafted-")]
        assert row["outcome"] == outcome, row
        assert words in row.get("reason", ""), row
        assert row["seconds"] < 15, row


def test_audio_below_1000_hz_is_refused_not_resampled(tmp_path: Path) -> None:
    """Regression: a WAV header saying 1 Hz made every 4096-sample frame resample into 800 MB
    of 48 kHz PCM (MemoryError under the fuzzer's 2 GB cap, minutes of work without it)."""
    from searchengine.config import IndexConfig
    from searchengine.errors import DecodeError
    from searchengine.media import audio, decode_file

    path = tmp_path / "one-hertz.wav"
    path.write_bytes(fz._wav(rate=1, channels=1, frames=100))
    with pytest.raises(DecodeError, match="sample rate of 1 Hz"):
        decode_file(str(path), IndexConfig())
    with pytest.raises(DecodeError):  # the stream path (a video's sound track) drops them
        list(audio.pcm_chunks(str(path), audio.CLAP_RATE))
    fine = tmp_path / "eight-khz.wav"
    fine.write_bytes(fz._wav(rate=8000, channels=1, frames=8000))
    assert audio.probe(str(fine)).sample_rate == 8000


def test_video_with_a_broken_sound_track_keeps_its_frames(tmp_path: Path) -> None:
    """Regression: a video whose sound track yields no samples (here a 1 Hz PCM header; in
    the campaign 35 of 2000 damaged MP4/MKV files) raised DecodeError from speech_source,
    which fails the whole file in the indexer although its frames decoded."""
    from searchengine.config import IndexConfig
    from searchengine.media import decode_file

    path = tmp_path / "one-hertz-sound.mkv"
    path.write_bytes(fz.mkv_1hz_audio())
    decoded = decode_file(str(path), IndexConfig())
    segments = [s for part in decoded.stream for s in part]
    assert [s.space for s in segments] and {s.space for s in segments} == {"clip"}
    assert decoded.speech_source is not None
    assert list(decoded.speech_source()) == []


def test_pdf_damaged_page_costs_only_its_own_text(tmp_path: Path) -> None:
    """Regression: one page pypdf cannot parse used to fail the whole document."""
    from searchengine.config import IndexConfig
    from searchengine.media import decode_file

    path = tmp_path / "one-bad-page.pdf"
    path.write_bytes(fz.pdf_one_bad_page())
    decoded = decode_file(str(path), IndexConfig())
    text = " ".join(s.text for s in decoded.segments)
    assert "lighthouse keeper" in text and "Sourdough" in text
    assert decoded.meta["pages"] == 3
    # pypdfium2 salvages what it can of the damaged page (pypdf gave up on it)
    assert "pages_unread" not in decoded.meta
    assert {s.loc["page"] for s in decoded.segments} <= {1, 2, 3}


def test_pdf_oversized_page_content_is_not_parsed(tmp_path: Path) -> None:
    """Regression: 150 kB of Flate data inflating to 64 MB of text operators took pypdf
    17-28 s a page to refuse, and one stream can be shown on every page."""
    import time

    from searchengine.config import IndexConfig
    from searchengine.errors import DecodeError
    from searchengine.media import decode_file
    from searchengine.media.text import PDF_PAGE_CONTENT_MAX, pdf_to_text

    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(fz._pdf_content_bomb(3))
    started = time.monotonic()
    with pytest.raises(DecodeError, match="MB of content"):
        decode_file(str(bomb), IndexConfig())
    assert time.monotonic() - started < 10
    big = fz._text_ops("filler words for a heavy page", PDF_PAGE_CONTENT_MAX // 40 + 1000)
    text, meta = pdf_to_text(fz._pdf_pages([fz._text_ops("a readable first page"), big]))
    assert "readable first page" in text and "filler" not in text
    assert meta["pages_unread"] == 1


def test_pdf_text_extraction_stops_at_its_time_budget() -> None:
    import time

    from searchengine.media.text import pdf_to_text

    data = fz.pdf_slow_pages(pages=30, page_bytes=300_000)
    started = time.monotonic()
    text, meta = pdf_to_text(data, budget_s=0.5)
    assert time.monotonic() - started < 8
    assert "every page repeats" in text
    assert 0 < meta["pages_unread"] < 30
    assert "left out after" in meta["pdf_errors"][-1]
