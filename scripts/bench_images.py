"""Benchmark image indexing throughput against the CLIP forward pass alone, in one run.

    python scripts/bench_images.py samples/images [--index indexes/bench-images]

Uses the real ViT-B-32 architecture with random weights (speed does not depend on the
weights). Measures images/s for a whole `index` run (decode, preprocess, embed, store, with
the model already loaded), and the same model's pure forward pass on pre-decoded,
pre-processed tensors at the same batch size and thread count. Their ratio shows how well
decoding and storage overlap with inference. Prints a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchengine import Engine  # noqa: E402
from searchengine.encoders.clip import BATCH  # noqa: E402
from searchengine.media.image import open_image  # noqa: E402


def random_vit_b_32(path: Path) -> Path:
    """A ViT-B-32 checkpoint with random weights, made once (about 600 MB)."""
    if not path.exists():
        import open_clip
        import torch

        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("--index", type=Path, default=Path("indexes/bench-images"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ckpt = random_vit_b_32(Path("indexes/vit-b-32-random.pt"))
    files = sorted(
        p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    # index the images alone (the sample folders also hold COPYRIGHT texts, which would
    # load and run the text model inside the timed run)
    only = Path("indexes/bench-images-files")
    shutil.rmtree(only, ignore_errors=True)
    only.mkdir(parents=True)
    for i, p in enumerate(files):
        (only / f"{i:04d}{p.suffix.lower()}").symlink_to(p.resolve())
    threads = int(os.environ.get("SEARCHENGINE_THREADS", "0")) or os.cpu_count()

    pipeline, pure = [], []
    for _ in range(args.rounds):
        if args.index.exists():
            shutil.rmtree(args.index)
        with Engine(args.index, create=True, models={"clip": "ViT-B-32"},
                    clip_pretrained=str(ckpt)) as eng:
            encoder = eng.models.encoder("clip")  # load outside the timed part
            t0 = time.perf_counter()
            summary = eng.index([only])
            elapsed = time.perf_counter() - t0
            indexed = eng.status()["types"]["image"]["indexed"]
            pipeline.append(indexed / elapsed)

            tensors = [
                encoder.preprocess_batch([open_image(str(p))[0] for p in files[i : i + BATCH]])
                for i in range(0, min(len(files), 8 * BATCH), BATCH)
            ]
            n = sum(t.shape[0] for t in tensors)
            t0 = time.perf_counter()
            for batch in tensors:
                encoder.forward_tensors(batch)
            pure.append(n / (time.perf_counter() - t0))

    med_pipe, med_pure = statistics.median(pipeline), statistics.median(pure)
    print(f"""
### Images ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, torch threads {threads})

Corpus: `{args.images}`: {len(files)} images ({indexed} indexed, {summary.failed} failed,
{summary.skipped} skipped); ViT-B-32 with random weights, batch {BATCH}; {args.rounds} rounds.

| measure | median | runs |
|---|---|---|
| whole `index` run | {med_pipe:.1f} images/s | {', '.join(f'{x:.1f}' for x in pipeline)} |
| forward pass alone (pre-decoded tensors) | {med_pure:.1f} images/s | {', '.join(f'{x:.1f}' for x in pure)} |
| ratio index / forward | {med_pipe / med_pure:.2f} | |
""")  # noqa: E501


if __name__ == "__main__":
    main()
