"""Benchmark video: seconds of video indexed per second of wall time, and the share of that
time spent decoding (frames and sound) versus embedding and storing.

    python scripts/bench_video.py [--minutes 3]

Input: the real cockatoo.mp4 clip plus a video built from real photos (scratch backgrounds,
5 s each) with a soundtrack of real recordings (qabcs noises), all from samples/ (fetch with
scripts/fetch_samples.py images sounds video). Models: ViT-B-32 and CLAP htsat-unfused shapes
with random weights (speed does not depend on weights), speech with the real tiny.en.
The decode-only pass runs in the same process, right after, on the same files.
Prints a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_audio import random_clap  # noqa: E402
from bench_images import random_vit_b_32  # noqa: E402

from searchengine import Engine  # noqa: E402
from searchengine.config import IndexConfig  # noqa: E402
from searchengine.media import audio, video  # noqa: E402
from tests.video_fixtures import make_slideshow  # noqa: E402


def build_video(out: Path, minutes: float) -> Path:
    photos = sorted((REPO / "samples/images/scratch/Backgrounds").rglob("*.jpg"))
    n = int(minutes * 60 / 5)
    images = [Image.open(photos[i % len(photos)]).convert("RGB") for i in range(n)]
    sounds = sorted((REPO / "samples/sounds/qabcs-data").rglob("*.ogg"))
    parts, total = [], 0
    for p in sounds:
        for _, pcm in audio.pcm_chunks(str(p), 48000):
            parts.append(pcm)
            total += len(pcm)
        if total >= n * 5 * 48000:
            break
    track = np.concatenate(parts)[: n * 5 * 48000]
    return make_slideshow(out, images, 5.0, fps=25, size=(640, 480), audio=track)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--index", type=Path, default=Path("indexes/bench-video"))
    args = ap.parse_args()
    folder = Path("indexes/bench-video-media")
    folder.mkdir(parents=True, exist_ok=True)
    made = folder / "slideshow.mp4"
    if not made.exists():
        build_video(made, args.minutes)
    shutil.copy(REPO / "samples/video/cockatoo.mp4", folder / "cockatoo.mp4")
    files = sorted(folder.glob("*.mp4"))
    duration = sum(video.probe(str(p)).duration for p in files)
    models = {"clip": "ViT-B-32", "clap": str(random_clap(Path("indexes/clap-htsat-random")))}
    ckpt = str(random_vit_b_32(Path("indexes/vit-b-32-random.pt")))

    if args.index.exists():
        shutil.rmtree(args.index)
    with Engine(args.index, create=True, models=models, clip_pretrained=ckpt) as eng:
        for space in ("clip", "clap", "text", "speech"):
            eng.models.encoder(space)  # load outside the timed part
        t0 = time.perf_counter()
        summary = eng.index([folder])
        index_wall = time.perf_counter() - t0
        status = eng.status()

    config = IndexConfig()
    t0 = time.perf_counter()
    frames = sounds = 0
    for p in files:
        decoded = video.decode(str(p), config)
        for part in decoded.stream or ():
            frames += sum(s.kind == "frame" for s in part)
            sounds += sum(s.kind == "sound" for s in part)
        for _ in decoded.speech_source() if decoded.speech_source else ():
            pass
    decode_wall = time.perf_counter() - t0
    share = decode_wall / index_wall
    print(f"""
### Video ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)

Input: {len(files)} videos, {duration / 60:.1f} min in all (`cockatoo.mp4` and a
{args.minutes:g}-minute 640x480 slideshow of real photos with real sounds); {frames} frames
and {sounds} sound windows; {summary.failed} failed. ViT-B-32 and CLAP (random weights),
speech with tiny.en. Vectors: clip {status['spaces']['clip']['vectors']},
clap {status['spaces']['clap']['vectors']}, text {status['spaces']['text']['vectors']}.

| measure | value |
|---|---|
| whole `index` run | {duration / index_wall:.2f} s of video per wall second ({index_wall:.1f} s) |
| decoding alone (frames, sound windows, 16 kHz speech audio), same run | {decode_wall:.1f} s |
| share decoding / embedding, transcription and storage | {share:.0%} / {1 - share:.0%} |
""")


if __name__ == "__main__":
    main()
