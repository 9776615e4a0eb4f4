"""Asking like a person, end to end through an index: places from GPS (photos and video),
dates and kinds read from the words and applied as filters, the reading shown, `--sort`,
and examples left out of their own results."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import wave
from datetime import datetime
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from searchengine import Engine, UserError
from searchengine.store.catalog import name_tokens
from searchengine.store.schema import SCHEMA_VERSION
from searchengine.types import Filters
from tests.conftest import run_cli

LISBON = (38.7223, -9.1393)
PARIS = (48.8566, 2.3522)
NOW = datetime(2025, 10, 15, 12, 0)


def dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4)


def photo(path: Path, seed: int, taken: str, gps: tuple[float, float] | None = None) -> Path:
    """A JPEG with EXIF DateTimeOriginal and, if given, EXIF GPS tags (as a phone writes)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x8769] = {0x9003: taken}
    if gps is not None:
        lat, lon = gps
        exif[0x8825] = {
            1: "N" if lat >= 0 else "S",
            2: dms(lat),
            3: "E" if lon >= 0 else "W",
            4: dms(lon),
        }
    Image.fromarray(pixels).save(path, exif=exif)
    return path


def tone(path: Path, seconds: float, freq: float, day: str | None = None) -> Path:
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(pcm.tobytes())
    if day:
        stamp = datetime.fromisoformat(day).timestamp()
        os.utime(path, (stamp, stamp))
    return path


def video_at(path: Path, where: tuple[float, float] | str, tag: str = "location") -> Path:
    """A one-second video whose location tag (ISO 6709) is `where`: MP4's ©xyz, or with
    `tag` another key (QuickTime's, in a .mov)."""
    value = where if isinstance(where, str) else f"{where[0]:+.4f}{where[1]:+09.4f}/"
    if path.suffix == ".mov":
        container = av.open(str(path), "w", format="mov", options={"movflags": "use_metadata_tags"})
    else:
        container = av.open(str(path), "w")
    container.metadata[tag] = value
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    for i in range(10):
        frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), "rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory, test_models) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ask") / "lib"
    (root / "photos").mkdir(parents=True)
    (root / "sounds").mkdir()
    (root / "notes").mkdir()
    photo(root / "photos" / "img_001.jpg", 1, "2019:07:01 10:00:00", LISBON)
    photo(root / "photos" / "img_002.jpg", 2, "2021:05:01 10:00:00", LISBON)
    photo(root / "photos" / "img_003.jpg", 3, "2019:08:01 10:00:00", PARIS)
    photo(root / "photos" / "img_004.jpg", 4, "2019:03:01 10:00:00")
    photo(root / "photos" / "img_005.jpg", 5, "2017:01:20 10:00:00")
    shutil.copyfile(root / "photos" / "img_001.jpg", root / "photos" / "backup_001.jpg")
    video_at(root / "photos" / "clip_001.mp4", LISBON)
    tone(root / "sounds" / "tone02s.wav", 2, 300)
    tone(root / "sounds" / "tone12s.wav", 12, 420)
    tone(root / "sounds" / "tone45s.wav", 45, 520)
    tone(root / "sounds" / "2019.wav", 3, 640, day="2024-02-02")  # a track titled 2019
    (root / "notes" / "server.txt").write_text(
        "Things that may break when the server restarts: the cache, the queue, the mail."
    )
    (root / "notes" / "garden.txt").write_text("Plant tomatoes in May after the last frost.")
    index = root.parent / "index"
    with Engine(
        index,
        create=True,
        models={
            "clip": str(test_models["clip_config"]),
            "clap": str(test_models["clap"]),
            "speech": "off",
        },
        clip_pretrained=str(test_models["clip_checkpoint"]),
    ) as eng:
        summary = eng.index([root])
        assert summary.failed == 0 and summary.pending == 0, summary.problems
    return root, index


def names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


# ---- places ---------------------------------------------------------------------------


def test_gps_photos_and_videos_get_place_names(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        places = {
            Path(rec.path).name: meta.get("place")
            for rec in eng.catalog.all_files()
            for meta in [eng.catalog.file_meta([rec.id])[rec.id]]
        }
    assert places["img_001.jpg"]["city"] == "Lisbon"
    assert places["img_001.jpg"]["country"] == "Portugal"
    assert places["clip_001.mp4"]["city"] == "Lisbon"  # from the MP4's location tag
    assert places["img_003.jpg"]["city"] == "Paris"
    assert places["img_003.jpg"]["country"] == "France"
    assert places["img_004.jpg"] is None and places["server.txt"] is None


def test_video_location_tags(tmp_path):
    from searchengine.media.video import probe

    quicktime = "com.apple.quicktime.location.ISO6709"
    mov = video_at(tmp_path / "phone.mov", "+38.7223-009.1393+010.000/", tag=quicktime)
    assert probe(str(mov)).gps == {"lat": 38.7223, "lon": -9.1393}
    assert probe(str(video_at(tmp_path / "p.mp4", PARIS))).gps == {"lat": 48.8566, "lon": 2.3522}
    for bad in ("+0000.000+00000.000/", "+3843.338-00908.358/", "nowhere"):
        assert probe(str(video_at(tmp_path / "bad.mp4", bad))).gps is None
    assert "gps" not in probe(str(video_at(tmp_path / "bad.mp4", "x", tag="title"))).meta()


def test_place_names_are_found_by_bm25(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        for word in ("Lisbon", "Portugal"):
            matched = eng.catalog.bm25_files(word, 50, Filters())
            found = sorted(Path(eng.catalog.files_by_id([f])[f].path).name for f, _ in matched)
            assert found == ["backup_001.jpg", "clip_001.mp4", "img_001.jpg", "img_002.jpg"]
        hits = eng.search("Portugal", k=20)
        assert not hits.reading.filters.any()  # one word alone: searched as words
        reasons = {Path(h.path).name: h.reason for h in hits}
        assert "file name" in reasons["img_002.jpg"]
        assert "file name" not in reasons.get("img_003.jpg", "")


def test_a_place_in_the_query_is_a_filter(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        hits = eng.search("photos in Lisbon", k=20, now=NOW)
        assert hits.reading.filters.place == "Lisbon"
        assert hits.reading.filters.types == ["image"]
        assert sorted(names(hits)) == ["backup_001.jpg", "img_001.jpg", "img_002.jpg"]
        both = eng.search("photos from 2019 in Lisbon", k=20, now=NOW)
        assert sorted(names(both)) == ["backup_001.jpg", "img_001.jpg"]
        assert both.reading.describe() == (
            '"photos from 2019 in Lisbon" type=image after=2019-01-01 before=2020-01-01 '
            "place=Lisbon"
        )
        video = eng.search("the video of the kids in Lisbon", k=20, now=NOW)
        assert names(video) == ["clip_001.mp4"] and video.reading.text == "kids"
        france = eng.search("pictures from France", k=20, now=NOW)
        assert names(france) == ["img_003.jpg"]
        flag = eng.search("a picture", k=20, place="Paris", now=NOW)
        assert names(flag) == ["img_003.jpg"]
        nowhere = eng.search("a picture", k=20, place="Atlantis", now=NOW)
        assert list(nowhere) == [] and "Atlantis" in nowhere.reading.notes[-1]


def test_a_city_that_is_a_word_is_not_a_place_unless_the_index_knows_it(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        for query in ("Nice weather", "Reading glasses", "Bath towels", "sunset in Nice"):
            reading = eng.read(query, now=NOW)
            assert reading.text == query and not reading.filters.any()
        assert eng.read("Lisbon trams", now=NOW).filters.place is None  # first word: ambiguous
        assert eng.read("old trams of Lisbon", now=NOW).filters.place is None  # a subject


# ---- dates, kinds, lengths -----------------------------------------------------------


def test_a_year_alone_is_a_title_not_a_filter(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        hits = eng.search("2019", k=30, now=NOW)
        assert not hits.reading.filters.any() and hits.reading.notes
        assert "2019.wav" in names(hits)  # dated 2024: a date filter would have lost it
        reasons = {Path(h.path).name: h.reason for h in hits}
        assert "file name" in reasons["2019.wav"]
        dated = eng.search("photos from 2019", k=30, now=NOW)
        assert sorted(names(dated)) == [
            "backup_001.jpg",
            "img_001.jpg",
            "img_003.jpg",
            "img_004.jpg",
        ]


def test_may_the_verb_is_no_date(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        hits = eng.search("things that may break", k=5, now=NOW)
        assert not hits.reading.filters.any() and hits.reading.text == "things that may break"
        assert names(hits)[0] == "server.txt"


def test_short_sounds_and_lengths(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        short = eng.search("short sounds of rain", k=20, now=NOW)
        assert short.reading.describe() == '"rain" type=audio max_duration=30'
        assert sorted(names(short)) == ["2019.wav", "tone02s.wav", "tone12s.wav"]
        longer = eng.search("recordings longer than half a minute", k=20, now=NOW)
        assert names(longer) == ["tone45s.wav"]


def test_flags_win_over_words_and_literal_reads_nothing(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        flagged = eng.search("photos from 2019", k=20, types=["audio"], after="2024-01-01")
        assert flagged.reading.filters.types == ["audio"]
        assert flagged.reading.filters.after == "2024-01-01"
        # the flag's range replaces the words' whole range: the two never mix into nothing
        assert flagged.reading.filters.before is None
        assert all(h.type == "audio" for h in flagged)
        literal = eng.search("photos from 2019 in Lisbon", k=20, literal=True, now=NOW)
        assert literal.reading.text == "photos from 2019 in Lisbon" and literal.reading.literal
        assert not literal.reading.filters.any() and len(literal) > 2


# ---- sort ---------------------------------------------------------------------------


def test_sort_by_date_orders_the_relevant_set(library):
    _, index = library
    with Engine(index, readonly=True) as eng:
        base = eng.search("a picture", k=4, types=["image"])
        oldest = eng.search("a picture", k=4, types=["image"], sort="date")
        newest = eng.search("a picture", k=4, types=["image"], sort="-date")
        assert sorted(names(base)) == sorted(names(oldest)) == sorted(names(newest))
        dates = [h.date for h in oldest]
        assert None not in dates and dates == sorted(dates)
        assert [h.date for h in newest] == sorted(dates, reverse=True)
        assert names(newest) != names(oldest)
        with pytest.raises(UserError, match="--sort"):
            eng.search("a picture", sort="newest")


# ---- examples left out ---------------------------------------------------------------


def test_similar_leaves_out_the_example_and_its_copies(library):
    root, index = library
    example = root / "photos" / "img_001.jpg"
    with Engine(index, readonly=True) as eng:
        hits = eng.similar(example, k=10, types=["image"])
        assert "img_001.jpg" not in names(hits) and "backup_001.jpg" not in names(hits)
        assert len(hits) == 4  # the other images, the page still full
        mine = eng.similar(example, k=10, types=["image"], include_self=True)
        assert set(names(mine)[:2]) == {"img_001.jpg", "backup_001.jpg"}
        liked = eng.search("a picture", k=10, types=["image"], like=example)
        assert {"img_001.jpg", "backup_001.jpg"}.isdisjoint(names(liked))
        assert len(liked) == 4
        kept = eng.search("a picture", k=10, types=["image"], like=example, include_self=True)
        assert {"img_001.jpg", "backup_001.jpg"} <= set(names(kept))


def test_an_example_outside_the_index_still_leaves_out_its_copies(library, tmp_path):
    root, index = library
    outside = tmp_path / "mine.jpg"
    shutil.copyfile(root / "photos" / "img_002.jpg", outside)
    with Engine(index, readonly=True) as eng:
        assert "img_002.jpg" not in names(eng.similar(outside, k=10, types=["image"]))


# ---- command line --------------------------------------------------------------------


def test_cli_shows_the_reading(library):
    root, index = library
    res = run_cli("search", "photos from 2019 in Lisbon", "--index", str(index), "-k", "5")
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith('read as: "photos from 2019 in Lisbon" type=image after=2019-01-01')
    assert "place=Lisbon" in first and "img_001.jpg" in res.stdout
    res = run_cli("search", "photos in Lisbon", "--index", str(index), "--json", "--sort", "-date")
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)  # still the list of hits
    assert [Path(h["path"]).name for h in hits][0] == "img_002.jpg"
    assert [h["date"][:10] for h in hits] == ["2021-05-01", "2019-07-01", "2019-07-01"]
    reading = json.loads(res.stderr.strip().splitlines()[0])["reading"]
    assert reading["text"] == "photos in Lisbon"
    assert reading["filters"] == {"type": ["image"], "place": "Lisbon"}
    res = run_cli("search", "photos in Lisbon", "--index", str(index), "--literal", "--json")
    assert res.returncode == 0 and "reading" not in res.stderr
    res = run_cli("similar", str(root / "photos" / "img_001.jpg"), "--index", str(index), "--json")
    assert res.returncode == 0, res.stderr
    assert "img_001.jpg" not in res.stdout
    res = run_cli("search", "x", "--index", str(index), "--sort", "size")
    assert res.returncode == 2 and "--sort wants" in res.stderr and "Traceback" not in res.stderr


# ---- format 2 -> 3 ---------------------------------------------------------------------


def test_format_2_index_gets_places_when_opened(library, tmp_path):
    """A catalog of format 2 (no file_places, no place in meta or in the file-name
    document) is migrated on open: the places of files with GPS are named."""
    _, index = library
    old = tmp_path / "v2"
    shutil.copytree(index, old)
    with sqlite3.connect(old / "catalog.db") as db:
        db.execute("DROP TABLE file_places")
        for fid, path, meta in db.execute("SELECT id, path, meta FROM files").fetchall():
            data = json.loads(meta) if meta else {}
            data.pop("place", None)
            db.execute("UPDATE files SET meta = ? WHERE id = ?", (json.dumps(data), fid))
            db.execute("DELETE FROM file_fts WHERE rowid = ?", (fid,))
            db.execute(
                "INSERT INTO file_fts(rowid, name) VALUES (?, ?)", (fid, name_tokens(path, data))
            )
        db.execute("PRAGMA user_version = 2")
    with Engine(old, readonly=True) as eng:  # a reader migrates a writable old index
        assert eng.catalog.known_places(["lisbon", "portugal", "paris"]) == {
            "lisbon": "Lisbon",
            "portugal": "Portugal",
            "paris": "Paris",
        }
        assert sorted(names(eng.search("photos in Lisbon", k=20, now=NOW))) == [
            "backup_001.jpg",
            "img_001.jpg",
            "img_002.jpg",
        ]
        assert len(eng.catalog.bm25_files("Portugal", 50, Filters())) == 4
    with sqlite3.connect(old / "catalog.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
