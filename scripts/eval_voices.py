#!/usr/bin/env python3
"""Measure the voice space on real recordings of several real people.

Data: KTuberling's spoken words (`python scripts/fetch_samples.py voices`), one folder per
language, each language recorded by one volunteer: the language is the speaker label.
Each speaker's words are joined, in a fixed random order, into clips of WORDS_PER_CLIP
words with 0.3 s pauses (about 4-6 s: the "short sample" of the issue), CLIPS clips per
speaker. Everything then goes through the engine's own code: Silero VAD cuts voice pieces
(searchengine/encoders/voice.py), the GE2E encoder embeds them, speakers.py clusters them
and ranks files for a query voice.

Reports:
- EER of same/different speaker on pairs of voice pieces, and on pairs of whole clips;
- precision@10 of voice search (each clip as the query, the other clips as the index;
  each speaker has CLIPS-1 >= 10 other clips, so 1.0 is reachable);
- cluster purity and completeness (inverse purity) over a sweep of thresholds, and the
  threshold with the best harmonic mean (optimistic: chosen on the data it reports);
- the honest figure: the threshold chosen on half of the speakers and purity/completeness/F
  reported on the other half (and the reverse), for a fixed split (alternate speakers in
  name order) and, as a spread, over SPLITS random half splits;
- seconds of audio embedded per wall second (VAD + embedding, this process's threads).

Usage: OMP_NUM_THREADS=1 python scripts/eval_voices.py [--samples samples/voices] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from searchengine import speakers as spk  # noqa: E402
from searchengine.config import IndexConfig  # noqa: E402
from searchengine.encoders.registry import ModelRegistry  # noqa: E402
from searchengine.encoders.voice import SAMPLE_RATE, voice_pieces  # noqa: E402
from searchengine.media.audio import pcm_chunks  # noqa: E402

WORDS_PER_CLIP = 4
CLIPS = 11
PAUSE_S = 0.3
SEED = 14
THRESHOLDS = (0.60, 0.65, 0.68, 0.70, 0.72, 0.75, 0.78, 0.80, 0.85)
SPLITS = 20


def load_words(folder: Path) -> np.ndarray:
    return np.concatenate([pcm for _, pcm in pcm_chunks(str(folder), SAMPLE_RATE)])


def build_clips(root: Path) -> list[tuple[str, np.ndarray]]:
    """(speaker, 16 kHz PCM) clips; speakers with too few words are left out."""
    rng = np.random.default_rng(SEED)
    need = WORDS_PER_CLIP * CLIPS
    clips = []
    for lang in sorted(p for p in root.iterdir() if p.is_dir()):
        words = sorted(lang.glob("*.ogg"))
        if len(words) < need:
            continue
        chosen = [words[i] for i in rng.permutation(len(words))[:need]]
        pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
        for c in range(CLIPS):
            parts = []
            for w in chosen[c * WORDS_PER_CLIP : (c + 1) * WORDS_PER_CLIP]:
                parts += [load_words(w), pause]
            clips.append((lang.name, np.concatenate(parts)))
    return clips


def eer(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where false accepts = false rejects."""
    order = np.argsort(-scores)
    s, y = scores[order], same[order].astype(bool)
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    frr = 1 - tp / max(y.sum(), 1)
    far = fp / max((~y).sum(), 1)
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2), float(s[i])


def pair_eer(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    sims = vectors @ vectors.T
    iu = np.triu_indices(len(vectors), 1)
    same = labels[:, None] == labels[None, :]
    e, t = eer(sims[iu], same[iu])
    return e, t, len(iu[0])


def purity(truth: np.ndarray, found: list) -> tuple[float, float, int]:
    """Purity (each cluster's main speaker) and completeness (each speaker's main cluster)."""
    keys = np.array([str(f) for f in found])
    n = len(truth)
    pure = sum(np.unique(truth[keys == k], return_counts=True)[1].max() for k in set(keys))
    comp = sum(np.unique(keys[truth == t], return_counts=True)[1].max() for t in set(truth))
    return pure / n, comp / n, len(set(keys))


def subset(rows: spk.VoiceRows, keep: np.ndarray) -> spk.VoiceRows:
    return spk.VoiceRows(
        rows.ids[keep], rows.file_ids[keep], rows.starts[keep], rows.ends[keep], rows.vectors[keep]
    )


def cluster_f(rows: spk.VoiceRows, labels: np.ndarray, t: float) -> dict[str, float]:
    found, _ = spk.cluster_rows(rows, [], t)
    pur, comp, n = purity(labels, found)
    return {"purity": pur, "completeness": comp, "f": 2 * pur * comp / (pur + comp), "clusters": n}


def held_out(
    rows: spk.VoiceRows, labels: np.ndarray, fit: set[str], test: set[str]
) -> dict[str, object]:
    """Choose the threshold (best F) on the `fit` speakers, report it on the `test` ones."""
    on_fit = np.isin(labels, sorted(fit))
    on_test = np.isin(labels, sorted(test))
    fit_rows, fit_labels = subset(rows, on_fit), labels[on_fit]
    chosen = max(THRESHOLDS, key=lambda t: cluster_f(fit_rows, fit_labels, t)["f"])
    test_rows, test_labels = subset(rows, on_test), labels[on_test]
    got = cluster_f(test_rows, test_labels, chosen)
    default = cluster_f(test_rows, test_labels, spk.SAME_SPEAKER)
    return {
        "fit_speakers": ",".join(sorted(fit)),
        "test_speakers": ",".join(sorted(test)),
        "chosen_threshold": chosen,
        **{k: round(v, 4) for k, v in got.items()},
        **{f"configured_{k}": round(v, 4) for k, v in default.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=Path, default=REPO / "samples" / "voices" / "ktuberling")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.samples.is_dir():
        sys.exit(f"{args.samples} is missing: run `python scripts/fetch_samples.py voices`")
    clips = build_clips(args.samples)
    speakers = sorted({s for s, _ in clips})
    encoder = ModelRegistry(IndexConfig()).encoder("voice")
    encoder.embed_items([clips[0][1][:SAMPLE_RATE]])  # warm up
    audio_s = sum(len(p) for _, p in clips) / SAMPLE_RATE
    t0 = time.perf_counter()
    piece_vecs, piece_spk, piece_clip, clip_vecs, spans = [], [], [], [], []
    for ci, (who, pcm) in enumerate(clips):
        pieces = voice_pieces(pcm)
        rows = encoder.embed_items([p for _, _, p in pieces])
        piece_vecs.append(rows)
        piece_spk += [who] * len(rows)
        piece_clip += [ci] * len(rows)
        spans += [(a, b) for a, b, _ in pieces]
        w = np.array([b - a for a, b, _ in pieces], dtype=np.float32)[:, None]
        mean = (rows * w).sum(axis=0)
        clip_vecs.append(mean / (np.linalg.norm(mean) or 1.0))
    wall = time.perf_counter() - t0
    vecs = np.concatenate(piece_vecs)
    labels = np.array(piece_spk)
    clip_labels = np.array([s for s, _ in clips])
    clip_mat = np.array(clip_vecs)

    piece_eer, piece_t, n_pairs = pair_eer(vecs, labels)
    clip_eer, clip_t, n_clip_pairs = pair_eer(clip_mat, clip_labels)

    # voice search: each clip's voice as the query, the other clips' pieces as the index
    rows = spk.VoiceRows(
        ids=np.arange(len(vecs)),
        file_ids=np.array(piece_clip),
        starts=np.array([a for a, _ in spans]),
        ends=np.array([b for _, b in spans]),
        vectors=vecs,
    )
    p10, p10_cut = [], []
    for ci in range(len(clips)):
        for bucket, floor in ((p10, -1.0), (p10_cut, spk.MATCH)):
            found = spk.search_voice(rows, clip_mat[ci], 10, floor, exclude={ci})
            hits = [clip_labels[m.file_id] == clip_labels[ci] for m in found]
            bucket.append(sum(hits) / 10)

    sweep = []  # the engine's way (pieces joined into turns) and, to compare, pieces alone
    for t in THRESHOLDS:
        found, _ = spk.cluster_rows(rows, [], t)
        alone, _ = spk.cluster(vecs, [], t)
        pur, comp, n = purity(labels, found)
        p1, c1, n1 = purity(labels, alone)
        sweep.append(
            {
                "threshold": t,
                "purity": pur,
                "completeness": comp,
                "f": 2 * pur * comp / (pur + comp),
                "clusters": n,
                "pieces_alone_f": 2 * p1 * c1 / (p1 + c1),
                "pieces_alone_clusters": n1,
            }
        )
    best = max(sweep, key=lambda r: r["f"])

    # honest: threshold chosen on half of the speakers, measured on the other half
    half_a, half_b = set(speakers[0::2]), set(speakers[1::2])
    fixed = [held_out(rows, labels, half_a, half_b), held_out(rows, labels, half_b, half_a)]
    rng = np.random.default_rng(SEED)
    spread = []
    for _ in range(SPLITS):
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        a, b = set(order[: len(order) // 2]), set(order[len(order) // 2 :])
        spread += [held_out(rows, labels, a, b), held_out(rows, labels, b, a)]
    chosen_counts: dict[str, int] = {}
    for r in spread:
        key = f"{r['chosen_threshold']:.2f}"
        chosen_counts[key] = chosen_counts.get(key, 0) + 1
    result = {
        "speakers": len(speakers),
        "speaker_labels": ",".join(speakers),
        "clips": len(clips),
        "pieces": int(len(vecs)),
        "audio_seconds": round(audio_s, 1),
        "piece_pair_eer": round(piece_eer, 4),
        "piece_eer_threshold": round(piece_t, 3),
        "piece_pairs": n_pairs,
        "clip_pair_eer": round(clip_eer, 4),
        "clip_eer_threshold": round(clip_t, 3),
        "clip_pairs": n_clip_pairs,
        "precision_at_10": round(float(np.mean(p10)), 4),
        "precision_at_10_with_cutoff": round(float(np.mean(p10_cut)), 4),
        "match_cutoff": spk.MATCH,
        "cluster_sweep": [{k: round(v, 4) for k, v in r.items()} for r in sweep],
        "best_cluster_threshold": best["threshold"],
        "configured_cluster_threshold": spk.SAME_SPEAKER,
        "held_out_fixed_split": fixed,
        "held_out_random_splits": len(spread),
        "held_out_random_chosen_thresholds": chosen_counts,
        **{
            f"held_out_random_{k}_median": round(float(np.median([r[k] for r in spread])), 4)
            for k in ("purity", "completeness", "f", "configured_f")
        },
        **{
            f"held_out_random_f_{q}": round(float(np.percentile([r["f"] for r in spread], p)), 4)
            for q, p in (("p10", 10), ("p90", 90))
        },
        "audio_seconds_per_wall_second": round(audio_s / wall, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if key not in ("cluster_sweep", "held_out_fixed_split"):
            print(f"{key:32} {value}")
    print("held out (threshold chosen on one half of the speakers, measured on the other):")
    for r in fixed:
        print(
            f"  fit {r['fit_speakers']} -> test {r['test_speakers']}: threshold "
            f"{r['chosen_threshold']}, purity {r['purity']:.3f}, completeness "
            f"{r['completeness']:.3f}, F {r['f']:.3f}, {r['clusters']} clusters; "
            f"at the configured {spk.SAME_SPEAKER}: purity {r['configured_purity']:.3f}, "
            f"completeness {r['configured_completeness']:.3f}, F {r['configured_f']:.3f}, "
            f"{r['configured_clusters']} clusters"
        )
    print("threshold  purity  completeness  F      clusters  (pieces alone: F, clusters)")
    for r in sweep:
        print(
            f"{r['threshold']:<9}  {r['purity']:.3f}   {r['completeness']:.3f}         "
            f"{r['f']:.3f}  {r['clusters']:<8}  ({r['pieces_alone_f']:.3f}, "
            f"{r['pieces_alone_clusters']})"
        )


if __name__ == "__main__":
    main()
