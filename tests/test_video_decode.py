"""Video decoding: shots, sampling, tiling, rotation, containers, seeking, damaged files.

Known-answer videos are slideshows of real photos (scratch backgrounds) written with PyAV by
tests/video_fixtures.py; cockatoo.mp4 is a real 14 s clip with sound.

Damaged files, as documented in searchengine/media/video.py: an MP4 cut short before its
index (the `moov` box the muxer writes at the end) cannot be opened and raises DecodeError;
one whose index comes first (faststart) opens, and its stream yields the frames before the
cut and then ends without raising. Random bytes raise DecodeError.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageOps, ImageStat

from searchengine.config import IndexConfig
from searchengine.errors import DecodeError
from searchengine.media import video
from searchengine.media.video import Frame, decode, frame_at, probe, sample_frames
from tests.video_fixtures import (
    COCKATOO,
    SAMPLES,
    ensure_samples,
    make_slideshow,
    solid,
    tone,
)

BACKGROUNDS = SAMPLES / "images" / "scratch" / "Backgrounds"
PHOTOS = ("Outdoors/brick-wall1.jpg", "Outdoors/city-with-water.jpg", "Outdoors/hay_field.jpg")
SIZE = (320, 240)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    ensure_samples("images", BACKGROUNDS / PHOTOS[0])
    return [Image.open(BACKGROUNDS / name).convert("RGB") for name in PHOTOS]


@pytest.fixture(scope="module")
def slideshow(photos: list[Image.Image], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three photos, 4 s each: shots start at 0, 4 and 8 s; 12 s long."""
    path = tmp_path_factory.mktemp("video") / "three.mp4"
    return make_slideshow(path, photos, 4.0, fps=10, size=SIZE)


@pytest.fixture(scope="module")
def cockatoo() -> Path:
    return ensure_samples("video", COCKATOO)


def mean_rgb(image: Image.Image) -> np.ndarray:
    return np.array(ImageStat.Stat(image.convert("RGB")).mean)


def fitted(photo: Image.Image) -> Image.Image:
    return ImageOps.fit(photo, SIZE, Image.Resampling.BICUBIC)


def nearest_photo(image: Image.Image, photos: list[Image.Image]) -> int:
    """Index of the photo whose mean colour is closest to the image's."""
    colours = [mean_rgb(fitted(p)) for p in photos]
    return int(np.argmin([np.abs(mean_rgb(image) - c).sum() for c in colours]))


def shot_starts(frames: list[Frame]) -> list[float]:
    return sorted({f.shot_start for f in frames})


def frame_segments(path: Path, config: IndexConfig | None = None):
    decoded = decode(str(path), config or IndexConfig())
    batches = list(decoded.stream)
    assert all(1 <= len(batch) <= video.BATCH for batch in batches)
    segments = [s for batch in batches for s in batch]
    return (
        decoded,
        [s for s in segments if s.kind == "frame"],
        [s for s in segments if s.kind == "sound"],
    )


def assert_tiles(segments, start: float, end: float, tol: float = 0.15) -> None:
    assert segments, "no frame segments"
    assert segments[0].start == pytest.approx(start, abs=1e-9)
    for a, b in zip(segments, segments[1:], strict=False):
        assert a.end == pytest.approx(b.start, abs=1e-9), (a.start, a.end, b.start)
        assert a.end > a.start
    assert segments[-1].end == pytest.approx(end, abs=tol)


# --- shots, sampling, tiling --------------------------------------------------------------


def test_the_three_photos_differ(photos: list[Image.Image]) -> None:
    thumbs = []
    for photo in photos:
        rgb = np.asarray(photo.resize((32, 32), Image.Resampling.BOX))
        thumbs.append(video._Thumb(video._histogram(rgb), video._grey(rgb)))
    for i in range(3):
        for j in range(i + 1, 3):
            assert video._hist_distance(thumbs[i], thumbs[j]) > 0.5
            assert video.change_score(thumbs[i], thumbs[j]) > video.CUT * 2


def test_three_scenes_give_three_shots(slideshow: Path, photos: list[Image.Image]) -> None:
    stats: dict = {}
    frames = list(sample_frames(str(slideshow), every_s=3.0, stats=stats))
    assert stats["mode"] == "sequential"
    starts = shot_starts(frames)
    assert len(starts) == 3
    for got, want in zip(starts, (0.0, 4.0, 8.0), strict=True):
        assert got == pytest.approx(want, abs=0.3)
    # still photos: the frame due 3 s into a shot is a near duplicate, so one frame a shot
    assert len(frames) == 3
    for k, frame in enumerate(frames):
        assert frame.image.mode == "RGB" and frame.image.size == SIZE
        assert nearest_photo(frame.image, photos) == k
        assert frame.time == pytest.approx(frame.shot_start, abs=0.3)
    assert [f.shot_end for f in frames] == pytest.approx([4.0, 8.0, 12.0], abs=0.3)


def test_frame_segments_tile_the_video(slideshow: Path) -> None:
    decoded, frames, sounds = frame_segments(slideshow)
    assert decoded.file_type == "video" and decoded.segments == []
    assert decoded.speech_source is None and sounds == []
    assert decoded.meta == {
        "duration": pytest.approx(12.0, abs=0.05),
        "fps": 10.0,
        "width": 320,
        "height": 240,
        "rotation": 0,
        "codec": "h264",
        "has_audio": False,
    }
    assert all((s.space, s.kind, s.text) == ("clip", "frame", None) for s in frames)
    assert all(isinstance(s.payload, Image.Image) for s in frames)
    assert_tiles(frames, 0.0, 12.0)
    assert [s.start for s in frames] == pytest.approx([0.0, 4.0, 8.0], abs=0.3)


def test_static_video_emits_one_frame(photos: list[Image.Image], tmp_path: Path) -> None:
    path = make_slideshow(tmp_path / "static.mp4", photos[:1], 20.0, fps=5, size=(160, 120))
    frames = list(sample_frames(str(path), every_s=3.0))
    assert len(frames) == 1
    assert (frames[0].shot_start, frames[0].shot_end) == (0.0, pytest.approx(20.0, abs=0.3))
    _, segments, _ = frame_segments(path)
    assert len(segments) == 1
    assert_tiles(segments, 0.0, 20.0, tol=0.3)


def test_changing_content_is_sampled_every_interval(tmp_path: Path) -> None:
    """A slow 10 s fade (no cut) yields one frame per `every_s`: none is a near duplicate."""
    steps = [solid((int(2.5 * i), 40, 255 - int(2.5 * i)), (96, 64)) for i in range(100)]
    path = make_slideshow(tmp_path / "fade.mp4", steps, 0.1, fps=10, size=(96, 64))
    frames = list(sample_frames(str(path), every_s=2.0))
    assert shot_starts(frames) == [0.0]
    assert [round(f.time) for f in frames] == [0, 2, 4, 6, 8]


def test_a_flash_is_not_a_cut(photos: list[Image.Image], tmp_path: Path) -> None:
    white = solid((255, 255, 255))
    images = [photos[0]] * 20 + [white] + [photos[0]] * 20  # one white frame at 2.0 s
    path = make_slideshow(tmp_path / "flash.mp4", images, 0.1, fps=10, size=SIZE)
    frames = list(sample_frames(str(path), every_s=3.0))
    assert shot_starts(frames) == [0.0]


def test_max_side_and_every_s(cockatoo: Path) -> None:
    frames = list(sample_frames(str(cockatoo), every_s=5.0, max_side=256))
    assert all(max(f.image.size) == 256 for f in frames)
    assert frames[0].image.size == (256, 144)
    times = [f.time for f in frames]
    assert all(
        b - a >= 5.0 - 1e-6 or f.shot_start == f.time
        for a, b, f in zip(times, times[1:], frames[1:], strict=False)
    )
    with pytest.raises(ValueError):
        next(sample_frames(str(cockatoo), every_s=0))


# --- the real clip ----------------------------------------------------------------------------


def test_cockatoo_probe(cockatoo: Path) -> None:
    info = probe(str(cockatoo))
    assert info.duration == pytest.approx(14.0, abs=0.2)
    assert info.has_audio is True
    assert (info.width, info.height, info.rotation, info.codec) == (1280, 720, 0, "h264")
    assert info.fps == pytest.approx(20.0)


def test_cockatoo_decode_streams_frames_then_sound(cockatoo: Path) -> None:
    decoded = decode(str(cockatoo), IndexConfig())
    assert decoded.meta["has_audio"] is True
    kinds: list[str] = []
    frames, sounds = [], []
    for batch in decoded.stream:
        assert 1 <= len(batch) <= video.BATCH
        assert len({s.kind for s in batch}) == 1  # a batch holds one space
        for seg in batch:
            kinds.append(seg.kind)
            (frames if seg.kind == "frame" else sounds).append(seg)
    assert kinds == sorted(kinds)  # "frame" < "sound": every frame before any sound window
    assert len(frames) >= 4
    assert all(max(s.payload.size) == 512 for s in frames)
    assert_tiles(frames, 0.0, 14.0, tol=0.2)
    assert sounds and all((s.space, s.kind) == ("clap", "sound") for s in sounds)
    first = sounds[0]
    assert (first.start, first.end) == (0.0, 10.0)
    assert first.payload.dtype == np.float32 and len(first.payload) == 10 * 48000
    assert sounds[-1].end == pytest.approx(14.0, abs=0.2)
    assert decoded.speech_source is not None
    start, pcm = next(iter(decoded.speech_source()))
    assert start == 0.0 and pcm.dtype == np.float32
    assert len(pcm) == pytest.approx(14.0 * 16000, rel=0.02)


def test_sniffed_decode_file_routes_videos(slideshow: Path) -> None:
    from searchengine.media import decode_file

    decoded = decode_file(str(slideshow), IndexConfig())
    assert decoded.file_type == "video"


# --- rotation -------------------------------------------------------------------------------


def corner_image(size: tuple[int, int] = SIZE) -> Image.Image:
    """Blue, with a red block in the top-left corner."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    return image


def red_corner(image: Image.Image) -> str:
    w, h = image.size
    corners = {
        "top-left": (w // 16, h // 16),
        "top-right": (w - 1 - w // 16, h // 16),
        "bottom-left": (w // 16, h - 1 - h // 16),
        "bottom-right": (w - 1 - w // 16, h - 1 - h // 16),
    }
    red = [name for name, xy in corners.items() if image.getpixel(xy)[0] > 200]
    assert len(red) == 1, red
    return red[0]


@pytest.mark.parametrize(
    ("rotation", "corner"),
    [(0, "top-left"), (90, "top-right"), (180, "bottom-right"), (270, "bottom-left")],
)
def test_rotation_metadata_is_applied(rotation: int, corner: str, tmp_path: Path) -> None:
    path = make_slideshow(tmp_path / f"rot{rotation}.mp4", [corner_image()], 1.0, rotation=rotation)
    info = probe(str(path))
    assert info.rotation == rotation
    upright_size = SIZE if rotation in (0, 180) else SIZE[::-1]
    assert (info.width, info.height) == upright_size
    frames = list(sample_frames(str(path), every_s=3.0))
    assert frames[0].image.size == upright_size
    assert red_corner(frames[0].image) == corner
    still = frame_at(str(path), 0.5)
    assert still.size == upright_size and red_corner(still) == corner


def test_rotate_tag_without_display_matrix() -> None:
    """Old files carry a "rotate" tag (clockwise degrees) instead of a display matrix."""
    frame = SimpleNamespace(side_data={}, rotation=0)
    for tag, corner in (("90", "top-right"), ("180", "bottom-right"), ("270", "bottom-left")):
        stream = SimpleNamespace(metadata={"rotate": tag})
        transpose = video._orientation(frame, stream)
        assert red_corner(corner_image().transpose(transpose)) == corner
    assert video._orientation(frame, SimpleNamespace(metadata={})) is None


# --- frame_at -------------------------------------------------------------------------------


def test_frame_at(slideshow: Path, photos: list[Image.Image]) -> None:
    for seconds, k in ((0.0, 0), (3.0, 0), (4.05, 1), (6.0, 1), (11.95, 2)):
        image = frame_at(str(slideshow), seconds)
        assert image.size == SIZE and image.mode == "RGB"
        assert nearest_photo(image, photos) == k, seconds
        assert np.abs(mean_rgb(image) - mean_rgb(fitted(photos[k]))).max() < 12
    with pytest.raises(DecodeError, match="past the end"):
        frame_at(str(slideshow), 12.5)
    with pytest.raises(ValueError):
        frame_at(str(slideshow), -1.0)


def test_frame_at_full_resolution(cockatoo: Path) -> None:
    image = frame_at(str(cockatoo), 7.0)
    assert image.size == (1280, 720)


# --- damaged and wrong files ------------------------------------------------------------------


def test_truncated_mp4_with_index_at_the_end_is_a_decode_error(
    slideshow: Path, tmp_path: Path
) -> None:
    data = slideshow.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(DecodeError):
        probe(str(cut))
    with pytest.raises(DecodeError):
        decode(str(cut), IndexConfig())
    with pytest.raises(DecodeError):
        next(sample_frames(str(cut), 3.0))
    with pytest.raises(DecodeError):
        frame_at(str(cut), 1.0)


def test_truncated_faststart_mp4_streams_what_is_left(
    photos: list[Image.Image], tmp_path: Path
) -> None:
    full = make_slideshow(
        tmp_path / "fast.mp4", photos, 4.0, size=SIZE, faststart=True, audio=tone(12.0)
    )
    data = full.read_bytes()
    cut = tmp_path / "fastcut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    decoded, frames, sounds = frame_segments(cut)  # no exception from the iterator
    assert decoded.meta["duration"] == pytest.approx(12.0, abs=0.1)  # what the header says
    assert 1 <= len(frames) <= 3
    assert_tiles(frames, 0.0, frames[-1].end)
    assert frames[-1].end < 12.0  # ends where the data ends, not where the header says


def test_garbage_in_the_middle_does_not_raise(photos: list[Image.Image], tmp_path: Path) -> None:
    full = make_slideshow(tmp_path / "mid.mp4", photos, 4.0, size=SIZE, faststart=True)
    data = bytearray(full.read_bytes())
    rng = np.random.default_rng(7)
    middle = len(data) // 2
    data[middle : middle + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    frames = list(sample_frames(str(bad), 3.0))
    assert frames and frames[0].shot_start == 0.0


def test_random_bytes_named_mkv(tmp_path: Path) -> None:
    path = tmp_path / "noise.mkv"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, np.uint8).tobytes())
    with pytest.raises(DecodeError):
        probe(str(path))
    with pytest.raises(DecodeError):
        decode(str(path), IndexConfig())
    with pytest.raises(DecodeError):
        frame_at(str(path), 0.0)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        pcm = tone(1.0).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
        frame.sample_rate = 48000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(DecodeError, match="no video stream"):
        probe(str(path))


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(str(tmp_path / "nope.mp4"))


# --- other containers ---------------------------------------------------------------------------


CONTAINERS = [
    (".mkv", None),
    (".webm", None),  # VP9, else VP8
    (".mov", None),
    (".avi", None),  # MPEG-4 part 2 + MP3
    (".mpg", None),  # MPEG-2 program stream, no index
    (".ogv", None),  # Theora when this PyAV can encode it, else VP8 in Ogg
]


@pytest.mark.parametrize(("ext", "codec"), CONTAINERS)
def test_other_containers(
    ext: str, codec: str | None, photos: list[Image.Image], tmp_path: Path
) -> None:
    path = make_slideshow(
        tmp_path / f"two{ext}", photos[:2], 2.0, size=(160, 120), codec=codec, audio=tone(4.0)
    )
    info = probe(str(path))
    assert info.duration == pytest.approx(4.0, abs=0.2)
    assert (info.width, info.height) == (160, 120)
    assert info.has_audio is True
    assert info.fps == pytest.approx(10.0)
    frames = list(sample_frames(str(path), every_s=3.0))
    assert shot_starts(frames) == pytest.approx([0.0, 2.0], abs=0.3)
    assert [nearest_photo(f.image, photos[:2]) for f in frames] == [0, 1]
    assert nearest_photo(frame_at(str(path), 3.0), photos[:2]) == 1


# --- seeking ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_show(photos: list[Image.Image], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 s, three 12 s shots, a keyframe every second: worth seeking for every_s=3."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return make_slideshow(path, photos, 12.0, fps=10, size=(160, 120), gop=10)


def test_seek_mode_decodes_less_and_finds_the_same_shots(long_show: Path) -> None:
    seq_stats: dict = {}
    seek_stats: dict = {}
    sequential = list(sample_frames(str(long_show), 3.0, mode="sequential", stats=seq_stats))
    sought = list(sample_frames(str(long_show), 3.0, stats=seek_stats))
    assert seek_stats["mode"] == "seek"
    assert seq_stats["decoded"] == 360
    assert seek_stats["decoded"] < 0.6 * seq_stats["decoded"]
    for frames in (sequential, sought):
        assert shot_starts(frames) == pytest.approx([0.0, 12.0, 24.0], abs=0.3)
        assert len(frames) == 3
        assert frames[-1].shot_end == pytest.approx(36.0, abs=0.3)


def test_short_or_unindexed_files_decode_sequentially(
    photos: list[Image.Image], tmp_path: Path
) -> None:
    stats: dict = {}
    path = make_slideshow(tmp_path / "long.mpg", photos, 12.0, size=(160, 120), gop=10)
    frames = list(sample_frames(str(path), 3.0, stats=stats))
    assert stats["mode"] == "sequential"
    assert shot_starts(frames) == pytest.approx([0.0, 12.0, 24.0], abs=0.3)


class _NoSeek:
    """A container whose seeks fail, as on a pipe or a file without a usable index."""

    def __init__(self, container) -> None:
        self._container = container

    def seek(self, *args, **kwargs):
        import av

        raise av.error.PermissionError(1, "seek not permitted")

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._container.close()


def test_failed_seeks_fall_back_to_sequential(long_show: Path, monkeypatch) -> None:
    real_open = video._open
    opened = []

    def open_once_unseekable(path):
        container = real_open(path)
        opened.append(path)
        return _NoSeek(container) if len(opened) == 1 else container

    monkeypatch.setattr(video, "_open", open_once_unseekable)
    stats: dict = {}
    frames = list(sample_frames(str(long_show), 3.0, mode="seek", stats=stats))
    assert stats["mode"] == "sequential (seek fell back)"
    assert shot_starts(frames) == pytest.approx([0.0, 12.0, 24.0], abs=0.3)


def test_frames_stream_lazily(long_show: Path) -> None:
    """The first frame comes before the file is decoded to the end (nothing is collected)."""
    stats: dict = {}
    frames = sample_frames(str(long_show), 3.0, mode="sequential", stats=stats)
    first = next(frames)
    assert first.time == 0.0
    assert stats["decoded"] < 360
    frames.close()


def test_seek_mode_places_a_skipped_cut_at_the_next_keyframe(
    photos: list[Image.Image], tmp_path: Path
) -> None:
    """Cuts at 12.5 and 25 s fall between the 3 s targets and between keyframes (every
    1 s): bisecting the indexed keyframes places each at the first keyframe after it."""
    path = make_slideshow(tmp_path / "mid.mp4", photos, 12.5, fps=10, size=(160, 120), gop=10)
    stats: dict = {}
    frames = list(sample_frames(str(path), 3.0, stats=stats))
    assert stats["mode"] == "seek"
    assert stats["decoded"] < 60
    assert shot_starts(frames) == pytest.approx([0.0, 13.0, 25.0], abs=0.05)
    assert [nearest_photo(f.image, photos) for f in frames] == [0, 1, 2]
    _, segments, _ = frame_segments(path)
    assert_tiles(segments, 0.0, 37.5, tol=0.3)
