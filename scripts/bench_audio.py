"""Benchmark audio: seconds of audio processed per second of wall time, for CLAP windows and
for speech transcription, on real recordings.

    python scripts/bench_audio.py samples/sounds [--speech-minutes 3]

CLAP: the real htsat-unfused architecture with random weights (speed does not depend on the
weights), through a whole `index` run with speech off, against the same model's forward pass
alone on pre-decoded windows (the baseline, same run, same threads). Speech: the real
faster-whisper tiny.en on a long espeak-ng recording of real text (speech everywhere) and on
the real sound effects (mostly no speech: voice-activity detection should skip them).
Prints a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchengine import Engine  # noqa: E402
from searchengine.config import IndexConfig  # noqa: E402
from searchengine.encoders.registry import ModelRegistry  # noqa: E402
from searchengine.media import audio  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AUDIO_EXT = (".wav", ".ogg", ".oga", ".mp3", ".flac")


def random_clap(target: Path) -> Path:
    """Full-size CLAP (htsat-unfused shape) with random weights, saved once."""
    if (target / "config.json").exists():
        return target
    sys.path.insert(0, str(REPO / "scripts"))
    from make_test_models import make_all
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    tiny = make_all(REPO / "tests" / ".models")["clap"]
    tokenizer = ClapProcessor.from_pretrained(tiny).tokenizer  # tokenizer speed is irrelevant
    processor = ClapProcessor(ClapFeatureExtractor(truncation="rand_trunc"), tokenizer)
    ClapModel(ClapConfig()).eval().save_pretrained(target)
    processor.save_pretrained(target)
    return target


def speech_recording(text_file: Path, seconds: float, out: Path) -> Path:
    """espeak-ng reading real prose until the recording is `seconds` long."""
    words = text_file.read_text(errors="replace").split()
    text = " ".join(words[2000 : 2000 + int(seconds * 2.6)])  # espeak speaks ~2.6 words/s
    subprocess.run(["espeak-ng", "-w", str(out), text], check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sounds", type=Path)
    ap.add_argument("--speech-minutes", type=float, default=3.0)
    ap.add_argument("--index", type=Path, default=Path("indexes/bench-audio"))
    args = ap.parse_args()
    files = sorted(p for p in args.sounds.rglob("*") if p.suffix.lower() in AUDIO_EXT)
    total_s = 0.0
    for p in files:
        try:
            total_s += audio.probe(str(p)).duration
        except Exception:
            pass
    clap_dir = random_clap(Path("indexes/clap-htsat-random"))
    # index the recordings alone (the sample folders also hold COPYRIGHT texts, which would
    # load and run the text model inside the timed run)
    only = Path("indexes/bench-audio-files")
    shutil.rmtree(only, ignore_errors=True)
    only.mkdir(parents=True)
    for i, p in enumerate(files):
        (only / f"{i:04d}{p.suffix.lower()}").symlink_to(p.resolve())

    # CLAP through the whole pipeline, speech off
    if args.index.exists():
        shutil.rmtree(args.index)
    with Engine(args.index, create=True, models={"clap": str(clap_dir), "speech": "off"}) as eng:
        encoder = eng.models.encoder("clap")
        t0 = time.perf_counter()
        summary = eng.index([only])
        clap_wall = time.perf_counter() - t0
        windows = eng.status()["spaces"]["clap"]["vectors"]
        # baseline: forward pass alone on pre-decoded windows of the same files
        pcm = [w[2] for p in files[:40] for w in audio.windows(str(p), 48000, 10.0, 5.0)]
        batch = encoder.preprocess_batch(pcm)
        t0 = time.perf_counter()
        encoder.forward_tensors(batch)
        forward_rate = len(pcm) / (time.perf_counter() - t0)
    pipeline_rate = windows / clap_wall

    # speech: dense speech, then the (mostly speechless) sound effects
    transcriber = ModelRegistry(IndexConfig()).encoder("speech")
    with tempfile.TemporaryDirectory() as tmp:
        jargon = next((REPO / "samples" / "docs").rglob("jargon*.txt"), None)
        source = jargon or next((REPO / "samples" / "docs").rglob("*.txt"))
        wav = speech_recording(source, args.speech_minutes * 60, Path(tmp) / "speech.wav")
        speech_s = audio.probe(str(wav)).duration
        t0 = time.perf_counter()
        lines = list(transcriber.transcribe(audio.pcm_chunks(str(wav), 16000, 30.0)))
        speech_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    quiet_lines = 0
    for p in files:
        try:
            quiet_lines += len(list(transcriber.transcribe(audio.pcm_chunks(str(p), 16000))))
        except Exception:
            pass
    sfx_wall = time.perf_counter() - t0

    threads = os.environ.get("SEARCHENGINE_THREADS", str(os.cpu_count()))
    print(f"""
### Audio ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, threads {threads})

Sounds: `{args.sounds}`: {len(files)} files, {total_s / 60:.1f} min of audio,
{summary.failed} failed; CLAP htsat-unfused architecture, random weights, 10 s windows, 5 s
hop ({windows} windows). Speech: faster-whisper tiny.en (int8) with VAD.

| measure | audio seconds per wall second | baseline in the same run | ratio |
|---|---|---|---|
| CLAP, whole `index` run (speech off) | {total_s / clap_wall:.1f} | forward alone: {forward_rate * 5:.1f} (5 s of new audio per window) | {pipeline_rate / forward_rate:.2f} (windows/s) |
| transcription, dense speech ({speech_s / 60:.1f} min, {len(lines)} lines) | {speech_s / speech_wall:.1f} | | |
| transcription, sound effects (VAD skips; {quiet_lines} lines) | {total_s / sfx_wall:.1f} | dense speech | {(total_s / sfx_wall) / (speech_s / speech_wall):.1f} |
""")  # noqa: E501


if __name__ == "__main__":
    main()
