"""Audio decoding: formats, resampling, windows, damaged files, video tracks, bounded memory.

Test media is encoded here with PyAV (a 440 Hz sine of known length), plus a few real sounds
from `samples/sounds` (fetched by `scripts/fetch_samples.py sounds` when missing).

Window convention checked below: windows start at 0, hop, 2*hop, ... and last window_s; the
last one is shorter and ends at the true end of the audio, unless it would lie entirely
inside the previous window. 23 s with 10/5 -> (0, 10), (5, 15), (10, 20), (15, 23).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from searchengine.config import IndexConfig
from searchengine.errors import DecodeError
from searchengine.media import audio as audio_mod
from searchengine.media.audio import AudioInfo, decode, pcm_chunks, probe, windows
from searchengine.types import Segment

REPO = Path(__file__).resolve().parents[1]
SOUNDS = REPO / "samples" / "sounds"
FREQ = 440.0

# (suffix, encoder, sample rate, encoder options); Opus only runs at 48 kHz (or lower).
FORMATS = [
    ("wav", "pcm_s16le", 44100, None),
    ("mp3", "libmp3lame", 44100, None),
    ("flac", "flac", 44100, None),
    ("ogg", "vorbis", 44100, {"strict": "experimental"}),  # FFmpeg's own Vorbis encoder
    ("opus", "libopus", 48000, None),
    ("m4a", "aac", 44100, None),
]
CODEC_NAMES = {
    "wav": "pcm_s16le",
    "mp3": "mp3",
    "flac": "flac",
    "ogg": "vorbis",
    "opus": "opus",
    "m4a": "aac",
}


def sine(n0: int, n: int, rate: int, freq: float = FREQ) -> np.ndarray:
    t = np.arange(n0, n0 + n, dtype=np.float64) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_tone(
    path: Path,
    codec: str = "pcm_s16le",
    seconds: float = 3.0,
    rate: int = 44100,
    layout: str = "stereo",
    options: dict[str, str] | None = None,
    fmt: str | None = None,
    block_s: float = 1.0,
) -> Path:
    """Encode a 440 Hz sine of `seconds` (possibly 0) with PyAV, one block at a time."""
    channels = av.AudioLayout(layout).nb_channels
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
        stream.codec_context.layout = layout
        out.start_encoding()  # writes the header even when no sample follows
        total, done, block = round(seconds * rate), 0, max(1, round(block_s * rate))
        while done < total:
            n = min(block, total - done)
            frame = av.AudioFrame.from_ndarray(
                np.tile(sine(done, n, rate), (channels, 1)), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts = rate, done
            for packet in stream.encode(frame):
                out.mux(packet)
            done += n
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_video(path: Path, seconds: float = 2.0, with_audio: bool = False) -> Path:
    """A small MPEG-4 video (gray frames), optionally with a stereo AAC 44.1 kHz track."""
    fps, rate = 10, 44100
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = None
        if with_audio:
            audio = out.add_stream("aac", rate=rate)
            audio.codec_context.layout = "stereo"
        for i in range(round(seconds * fps)):
            img = np.full((48, 64, 3), (i * 10) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
            if audio is not None:
                n0, n = i * rate // fps, rate // fps
                aframe = av.AudioFrame.from_ndarray(
                    np.tile(sine(n0, n, rate), (2, 1)), format="fltp", layout="stereo"
                )
                aframe.sample_rate, aframe.pts = rate, n0
                for packet in audio.encode(aframe):
                    out.mux(packet)
        for stream in (video, audio):
            if stream is not None:
                for packet in stream.encode(None):
                    out.mux(packet)
    return path


def pcm_of(path: Path, rate: int = 48000, **kw) -> tuple[list[float], np.ndarray]:
    chunks = list(pcm_chunks(str(path), rate, **kw))
    return [s for s, _ in chunks], np.concatenate([c for _, c in chunks])


def spans(path: Path, window_s: float, hop_s: float, rate: int = 48000) -> list[tuple]:
    return [(s, e, len(pcm)) for s, e, pcm in windows(str(path), rate, window_s, hop_s)]


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    return {
        ext: write_tone(folder / f"tone.{ext}", codec, 3.0, rate, options=opts)
        for ext, codec, rate, opts in FORMATS
    }


@pytest.fixture(scope="module")
def sounds() -> Path:
    """Real recordings; fetched (Debian packages) on a machine that lacks them."""
    if not any(SOUNDS.rglob("*.oga")):
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "fetch_samples.py"), "sounds"],
            cwd=REPO,
            check=True,
            timeout=600,
        )
    return SOUNDS


# --- formats -----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [f[0] for f in FORMATS])
def test_formats_probe_and_decode_to_mono_48k(tones: dict[str, Path], ext: str) -> None:
    path = tones[ext]
    info = probe(str(path))
    assert isinstance(info, AudioInfo)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    assert info.sample_rate == (48000 if ext == "opus" else 44100)
    assert info.channels == 2
    assert info.codec == CODEC_NAMES[ext]

    starts, pcm = pcm_of(path, 48000)
    assert starts == [0.0]
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert abs(len(pcm) - 48000 * 3.0) < 0.1 * 48000
    assert np.isfinite(pcm).all()
    # the sine survives: amplitude ~0.5 and ~440 zero crossings up per second
    middle = pcm[len(pcm) // 3 : 2 * len(pcm) // 3]
    assert 0.35 < np.abs(middle).max() < 0.75
    ups = np.count_nonzero((middle[:-1] < 0) & (middle[1:] >= 0)) / (len(middle) / 48000)
    assert ups == pytest.approx(FREQ, rel=0.03)


def test_decode_builds_clap_segments_and_meta(tones: dict[str, Path]) -> None:
    cfg = IndexConfig()
    cfg.audio_window_s, cfg.audio_hop_s = 1.0, 0.5
    decoded = decode(str(tones["flac"]), cfg)
    assert decoded.file_type == "audio"
    assert decoded.segments == []
    assert decoded.meta == {
        "duration": pytest.approx(3.0, abs=0.01),
        "sample_rate": 44100,
        "channels": 2,
        "codec": "flac",
    }
    batches = list(decoded.stream)
    segs = [s for batch in batches for s in batch]
    assert [len(b) for b in batches] == [5]
    assert all(isinstance(s, Segment) and (s.space, s.kind) == ("clap", "sound") for s in segs)
    assert [(s.start, s.end) for s in segs] == [
        (0.0, 1.0),
        (0.5, 1.5),
        (1.0, 2.0),
        (1.5, 2.5),
        (2.0, 3.0),
    ]
    assert all(s.payload.dtype == np.float32 and s.payload.shape == (48000,) for s in segs)

    chunks = list(decoded.speech_source())
    assert [s for s, _ in chunks] == [0.0]
    assert chunks[0][1].dtype == np.float32 and len(chunks[0][1]) == 3 * 16000


def test_stream_batches_hold_at_most_16_segments(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "t.wav", seconds=20.0, rate=16000, layout="mono")
    cfg = IndexConfig()
    cfg.audio_window_s, cfg.audio_hop_s = 1.0, 1.0
    batches = list(decode(str(path), cfg).stream)
    assert [len(b) for b in batches] == [16, 4]
    assert [s.start for b in batches for s in b] == [float(i) for i in range(20)]


def test_decode_is_lazy(tones: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = audio_mod.av.open

    def counting_open(*args, **kwargs):
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(audio_mod.av, "open", counting_open)
    decoded = decode(str(tones["mp3"]), IndexConfig())
    assert len(opened) == 1  # the probe
    source = decoded.speech_source()
    assert len(opened) == 1  # a generator: nothing opened until iterated
    start, pcm = next(source)
    assert len(opened) == 2 and start == 0.0 and len(pcm) > 0
    next(decoded.stream)
    assert len(opened) == 3


def test_chunks_are_contiguous_and_sized(tones: dict[str, Path]) -> None:
    chunks = list(pcm_chunks(str(tones["wav"]), 16000, chunk_seconds=0.7))
    assert [s for s, _ in chunks] == pytest.approx([0.0, 0.7, 1.4, 2.1, 2.8])
    assert [len(c) for _, c in chunks] == [11200, 11200, 11200, 11200, 3200]


# --- windows -----------------------------------------------------------------------------


def test_windows_23s_clip_with_10s_windows_5s_hop(tmp_path: Path) -> None:
    # 48 kHz mono PCM needs no resampling, so every boundary is exact
    path = write_tone(tmp_path / "t23.wav", seconds=23.0, rate=48000, layout="mono")
    assert spans(path, 10.0, 5.0) == [
        (0.0, 10.0, 480000),
        (5.0, 15.0, 480000),
        (10.0, 20.0, 480000),
        (15.0, 23.0, 384000),
    ]
    # the windows hold the right samples: overlapping halves are identical
    ws = list(windows(str(path), 48000, 10.0, 5.0))
    np.testing.assert_array_equal(ws[0][2][240000:], ws[1][2][:240000])
    np.testing.assert_array_equal(ws[3][2], pcm_of(path)[1][720000:])


def test_windows_no_tail_inside_previous_window(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "t20.wav", seconds=20.0, rate=48000, layout="mono")
    assert spans(path, 10.0, 5.0) == [
        (0.0, 10.0, 480000),
        (5.0, 15.0, 480000),
        (10.0, 20.0, 480000),
    ]


def test_short_clip_gives_one_window_of_its_own_length(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "t2.mp3", "libmp3lame", seconds=2.0)
    ((start, end, n),) = spans(path, 10.0, 5.0)
    assert start == 0.0 and end == pytest.approx(2.0, abs=0.05) and n == round(end * 48000)


def test_windows_span_chunk_boundaries(tmp_path: Path) -> None:
    # 75 s of 48 kHz: windows straddle the 30 s chunks of pcm_chunks
    path = write_tone(tmp_path / "t75.wav", seconds=75.0, rate=48000, layout="mono", block_s=15.0)
    full = pcm_of(path)[1]
    ws = list(windows(str(path), 48000, 10.0, 4.0))
    # full windows start at 0, 4, ..., 64 (ending 74); the tail (68, 75) reaches past 74
    assert [w[0] for w in ws] == [4.0 * i for i in range(18)]
    assert ws[-2][:2] == (64.0, 74.0) and ws[-1][:2] == (68.0, 75.0)
    for start, end, pcm in ws:
        np.testing.assert_array_equal(pcm, full[round(start * 48000) : round(end * 48000)])


# --- damaged and unusable files ----------------------------------------------------------


def test_truncated_mp3_keeps_what_decoded(tmp_path: Path, tones: dict[str, Path]) -> None:
    data = tones["mp3"].read_bytes()
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: len(data) // 2])
    decoded = decode(str(path), IndexConfig())  # no exception
    _, pcm = pcm_of(path)
    assert 1.0 < len(pcm) / 48000 < 2.0
    segs = [s for batch in decoded.stream for s in batch]
    assert len(segs) == 1 and segs[0].start == 0.0
    assert segs[0].end == pytest.approx(len(pcm) / 48000)
    speech = np.concatenate([c for _, c in decoded.speech_source()])
    assert len(speech) / 16000 == pytest.approx(len(pcm) / 48000, abs=0.01)


def test_truncated_flac_and_wav_keep_what_decoded(tmp_path: Path) -> None:
    for ext, codec in (("flac", "flac"), ("wav", "pcm_s16le")):
        src = write_tone(tmp_path / f"long.{ext}", codec, seconds=8.0)
        data = src.read_bytes()
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(data[: len(data) // 2])
        probe(str(cut))
        seconds = len(pcm_of(cut)[1]) / 48000
        assert 3.0 < seconds < 5.0, ext


def test_garbage_in_the_middle_skips_it_and_goes_on(tmp_path: Path) -> None:
    data = bytearray(write_tone(tmp_path / "six.mp3", "libmp3lame", seconds=6.0).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = np.random.default_rng(1).integers(0, 256, 3000, np.uint8).tobytes()
    path = tmp_path / "damaged.mp3"
    path.write_bytes(bytes(data))
    _, pcm = pcm_of(path)
    assert 5.0 < len(pcm) / 48000 < 6.1  # ~0.2 s lost, not the second half
    assert np.abs(pcm[-48000:]).max() > 0.35  # the sine is back after the damage


def test_rate_and_layout_changes_mid_stream(tmp_path: Path) -> None:
    # concatenated MP3s: 2 s stereo 44.1 kHz, then 2 s mono 22.05 kHz
    first = write_tone(tmp_path / "a.mp3", "libmp3lame", seconds=2.0, rate=44100)
    second = write_tone(tmp_path / "b.mp3", "libmp3lame", seconds=2.0, rate=22050,
                        layout="mono", options={"b": "32k"})
    path = tmp_path / "ab.mp3"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    _, pcm = pcm_of(path)
    assert len(pcm) / 48000 == pytest.approx(4.0, abs=0.15)
    for second_no in (0.5, 1.5, 2.5, 3.5):  # the tone is heard all along, at 440 Hz
        part = pcm[round(second_no * 48000) : round((second_no + 0.4) * 48000)]
        ups = np.count_nonzero((part[:-1] < 0) & (part[1:] >= 0)) / 0.4
        assert np.abs(part).max() > 0.3 and ups == pytest.approx(FREQ, rel=0.05)


def test_surround_is_downmixed(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "six.flac", "flac", seconds=1.0, rate=48000, layout="5.1")
    assert probe(str(path)).channels == 6
    _, pcm = pcm_of(path, 16000)
    assert pcm.shape == (16000,) and np.abs(pcm).max() > 0.1


def test_duration_counted_when_headers_lack_it(
    tones: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio_mod, "_header_duration", lambda container, stream: None)
    assert probe(str(tones["mp3"])).duration == pytest.approx(3.0, abs=0.05)
    assert probe(str(tones["ogg"])).duration == pytest.approx(3.0, abs=0.05)


def test_random_bytes_named_mp3(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(DecodeError, match="^truncated or corrupt audio: ") as err:
        decode(str(path), IndexConfig())
    assert str(tmp_path) not in str(err.value)  # a short reason, not a path dump
    with pytest.raises(DecodeError, match="^truncated or corrupt audio: "):
        list(pcm_chunks(str(path), 16000))


@pytest.mark.parametrize(
    "ext,codec,reason",
    [
        ("wav", "pcm_s16le", "^empty audio: no samples$"),
        ("flac", "flac", "^empty audio: no samples$"),
        ("m4a", "aac", "^no audio stream$"),  # the muxer drops a track without samples
        ("mp3", "libmp3lame", "^truncated or corrupt audio: cannot open"),
    ],
)
def test_zero_length_audio(tmp_path: Path, ext: str, codec: str, reason: str) -> None:
    path = write_tone(tmp_path / f"empty.{ext}", codec, seconds=0.0)
    assert path.stat().st_size > 0
    with pytest.raises(DecodeError, match=reason):
        decode(str(path), IndexConfig())
    with pytest.raises(DecodeError):
        list(pcm_chunks(str(path), 16000))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.ogg"
    path.write_bytes(b"")
    with pytest.raises(DecodeError):
        decode(str(path), IndexConfig())


def test_video_without_audio_stream(tmp_path: Path) -> None:
    path = write_video(tmp_path / "silent.mp4")
    with pytest.raises(DecodeError, match="no audio stream"):
        decode(str(path), IndexConfig())
    with pytest.raises(DecodeError, match="no audio stream"):
        next(pcm_chunks(str(path), 16000))


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(str(tmp_path / "nope.wav"))


def test_audio_track_of_a_video(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", seconds=2.0, with_audio=True)
    info = probe(str(path))
    assert info.stream_index == 1 and info.codec == "aac" and info.channels == 2
    assert info.duration == pytest.approx(2.0, abs=0.1)
    _, pcm = pcm_of(path, 16000, stream_index=info.stream_index)
    assert len(pcm) / 16000 == pytest.approx(2.0, abs=0.1)
    assert len(pcm_of(path, 16000)[1]) == len(pcm)  # the default picks the same track
    with pytest.raises(DecodeError, match="no audio stream"):
        next(pcm_chunks(str(path), 16000, stream_index=0))  # 0 is the video
    ((start, end, _),) = spans(path, 10.0, 5.0)
    assert start == 0.0 and end == pytest.approx(2.0, abs=0.1)


# --- real recordings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["sound-theme-freedesktop/*.oga", "scratch/**/*.wav", "scratch/**/*.mp3", "qabcs-data/*.ogg"],
)
def test_real_samples(sounds: Path, pattern: str) -> None:
    path = sorted(sounds.glob(pattern))[0]
    decoded = decode(str(path), IndexConfig())
    assert decoded.meta["duration"] > 0
    assert decoded.meta["sample_rate"] > 0 and decoded.meta["channels"] in (1, 2)
    segs = [s for batch in decoded.stream for s in batch]
    assert segs and segs[0].start == 0.0
    assert segs[-1].end == pytest.approx(decoded.meta["duration"], abs=0.1)
    pcm = np.concatenate([s.payload for s in segs])
    assert pcm.dtype == np.float32 and np.abs(pcm).max() > 0.01  # not silence


# --- long files --------------------------------------------------------------------------

HOUR_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time, tracemalloc
    from searchengine.config import IndexConfig
    from searchengine.media.audio import decode

    path, small = sys.argv[1], sys.argv[2]
    for _ in decode(small, IndexConfig()).stream:  # warm up codecs and caches
        pass
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    tracemalloc.start()
    decoded = decode(path, IndexConfig())
    n, first, last_end, prev, hops, biggest = 0, None, 0.0, None, set(), 0
    for batch in decoded.stream:
        biggest = max(biggest, len(batch))
        for seg in batch:
            first = seg.start if first is None else first
            if prev is not None:
                hops.add(round(seg.start - prev, 6))
            prev, last_end, n = seg.start, seg.end, n + 1
        del batch, seg  # a consumer embeds a batch and lets it go
    clap_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    speech_n = sum(len(pcm) for _, pcm in decoded.speech_source())
    speech_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({
        "duration": decoded.meta["duration"], "windows": n, "first": first,
        "last_end": last_end, "hops": sorted(hops), "biggest_batch": biggest,
        "clap_peak": clap_peak, "speech_peak": speech_peak, "speech_samples": speech_n,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "maxrss_before": rss0 * 1024,
        "seconds": time.perf_counter() - t0,
    }))
    """
)


def test_hour_long_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    hour = 3600.0
    # 8 kHz FLAC in 16384-sample frames: 8.5 MB, encoded in about a second
    path = write_tone(
        tmp_path / "hour.flac",
        "flac",
        seconds=hour,
        rate=8000,
        layout="mono",
        options={"frame_size": "16384"},
        block_s=60.0,
    )
    small = write_tone(tmp_path / "small.flac", "flac", seconds=1.0, rate=8000, layout="mono")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", HOUR_SCRIPT, str(path), str(small)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(r)
    full_clap_pcm = hour * 48000 * 4  # 691 MB of float32 at 48 kHz
    full_speech_pcm = hour * 16000 * 4  # 230 MB at 16 kHz
    # windows of 10 s every 5 s cover 0..3600 s exactly, handed out 16 at a time
    assert r["duration"] == pytest.approx(hour, abs=0.01)
    assert r["first"] == 0.0 and r["last_end"] == pytest.approx(hour, abs=1e-3)
    assert r["hops"] == [5.0] and r["windows"] == 719 and r["biggest_batch"] == 16
    assert r["speech_samples"] == pytest.approx(hour * 16000, abs=16)
    # memory: one batch of windows (16 x 1.9 MB) plus a few 30 s chunks, never the whole file
    assert r["clap_peak"] < full_clap_pcm / 10
    assert r["speech_peak"] < full_speech_pcm / 20
    # (ru_maxrss is not asserted: Linux carries it over from the parent through fork+exec,
    # so it measures pytest, not the decoder; tracemalloc above sees only this process)
