"""Domain tuning (`searchengine tune PAIRS.csv`): a query-side linear adapter learned from
(query text, file) pairs, the base model frozen.

The adapter W (d x d) starts at the identity and is trained with InfoNCE over in-batch
negatives: each pair's query, mapped by W and normalised, should be closer to its own file's
vector than to the other files of the batch (pairs of one file never count as each other's
negatives). A file's target is its segment nearest to the base query (the passage or moment
the pair points at), so the adapter learns where queries of this domain should land, not a
file average. A penalty on ||W - I||^2 keeps it near the base model. Item vectors are never
changed: applying or removing an adapter re-embeds nothing (searchengine/adapters.py).

`--eval` holds out a seeded share of the *files* (all their pairs, and any query text also
asked of them), trains on the rest, and reports recall@10 and MRR@10 of `search` before and
after on the held-out pairs and on an outside set (other queries, not in the pairs), so a
regression shows. Figures come from the real ranking (vectors fused with BM25).
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from searchengine import adapters
from searchengine.errors import ModelUnavailable, UserError
from searchengine.search import TYPES_IN_SPACE

if TYPE_CHECKING:
    from searchengine.engine import Engine

TUNE_SPACES = ("text", "clip", "clap")
EVAL_K = 10
OUTSIDE_NAMES = 100
"""Files asked by their names when no --outside set is given (seeded sample)."""


@dataclass(frozen=True)
class TuneParams:
    """Training knobs; chosen before any held-out figure was seen (docs/benchmarks.md)."""

    epochs: int = 30
    batch: int = 64
    lr: float = 1e-3
    temperature: float = 0.05
    identity_weight: float = 0.01
    """Weight of ||W - I||^2 in the loss: how strongly the map stays near the base model."""
    seed: int = 0
    threads: int = 1


@dataclass
class Pair:
    query: str
    path: str
    line: int
    file_id: int = 0


@dataclass
class Score:
    """recall@10 and MRR@10 of one query set, before and after."""

    name: str
    queries: int
    recall_before: float
    recall_after: float
    mrr_before: float
    mrr_after: float


@dataclass
class TuneReport:
    space: str
    used: int
    skipped: list[str] = field(default_factory=list)
    train_pairs: int = 0
    held_pairs: int = 0
    seconds: float = 0.0
    loss_before: float = 0.0
    loss_after: float = 0.0
    scores: list[Score] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "space": self.space,
            "pairs_used": self.used,
            "skipped": self.skipped,
            "train_pairs": self.train_pairs,
            "held_out_pairs": self.held_pairs,
            "seconds": round(self.seconds, 2),
            "loss": [round(self.loss_before, 4), round(self.loss_after, 4)],
            "eval": [s.__dict__ for s in self.scores],
            "notes": self.notes,
        }


# ---- pairs ---------------------------------------------------------------------------------


def _dialect(head: str) -> type[csv.Dialect] | csv.Dialect:
    """Spreadsheets export `;` or tab as often as `,`: take the delimiter the head uses,
    comma when it is unclear."""
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def read_pairs(csv_path: str | os.PathLike[str]) -> tuple[list[Pair], list[str]]:
    """(query, absolute path) rows of a CSV, and a line per unusable row. A first row
    `query,path` is a header. A relative path is taken from the CSV's folder when the file
    is there, else from the current folder."""
    src = Path(csv_path)
    try:
        with open(src, newline="", encoding="utf-8-sig") as fh:
            dialect = _dialect(fh.read(8192))
            fh.seek(0)
            rows = list(csv.reader(fh, dialect=dialect))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(
            f"cannot read {csv_path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    pairs: list[Pair] = []
    problems: list[str] = []
    for n, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if n == 1 and [c.lower() for c in cells[:2]] in (["query", "path"], ["query", "file"]):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            problems.append(f"line {n}: wants two columns, query text and file path")
            continue
        path = Path(cells[1]).expanduser()
        if not path.is_absolute() and (src.parent / path).exists():
            path = src.parent / path
        pairs.append(Pair(cells[0], os.path.abspath(path), n))
    if not pairs:
        raise UserError(f"{csv_path} holds no (query, file path) pairs" + _first(problems))
    return pairs, problems


def _first(problems: list[str]) -> str:
    return f" ({problems[0]})" if problems else ""


def resolve_pairs(engine: Engine, pairs: list[Pair], space: str) -> tuple[list[Pair], list[str]]:
    """The pairs whose file is indexed with vectors in `space`; a line for each other one."""
    from searchengine.crawler import display_path

    kept: list[Pair] = []
    skipped: list[str] = []
    for pair in pairs:
        rec = engine.catalog.file_by_key(os.fsencode(pair.path))
        shown = display_path(pair.path)
        if rec is None:
            skipped.append(f"line {pair.line}: {shown} is not in the index")
        elif rec.state != "indexed":
            skipped.append(f"line {pair.line}: {shown} is {rec.state}, not indexed")
        elif space not in engine.catalog.mean_vectors(rec.id):
            skipped.append(f"line {pair.line}: {shown} has no vectors in the {space} space")
        else:
            pair.file_id = rec.id
            kept.append(pair)
    return kept, skipped


def split_by_file(pairs: list[Pair], share: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): a seeded share of the files with all their pairs held out; a
    training pair whose query text is also asked of a held-out file is dropped, so neither
    a file nor a query is seen in both."""
    files = sorted({p.file_id for p in pairs})
    random.Random(seed).shuffle(files)
    n_held = min(len(files) - 1, max(1, round(share * len(files))))
    held_files = set(files[:n_held])
    held = [p for p in pairs if p.file_id in held_files]
    asked = {p.query.casefold() for p in held}
    train = [p for p in pairs if p.file_id not in held_files and p.query.casefold() not in asked]
    return train, held


# ---- vectors and training ------------------------------------------------------------------


def query_rows(engine: Engine, space: str, texts: Sequence[str]) -> np.ndarray:
    """The base model's query vectors (no adapter), in batches."""
    try:
        enc = engine.models.query_encoder(space)
    except ModelUnavailable as exc:
        raise UserError(str(exc)) from None
    rows = [enc.embed_queries(list(texts[i : i + 64])) for i in range(0, len(texts), 64)]
    return np.vstack(rows).astype(np.float32)


def target_rows(engine: Engine, space: str, pairs: list[Pair], queries: np.ndarray) -> np.ndarray:
    """Per pair, its file's segment nearest to the base query, else its whole-file vector."""
    out = np.zeros_like(queries)
    for i, pair in enumerate(pairs):
        best = engine.catalog.best_segments([pair.file_id], space, queries[i], 1).get(pair.file_id)
        vec = None
        if best:
            vec = engine.catalog.vector_map([best[0][1].id]).get(best[0][1].id)
        if vec is None or vec.shape[0] != queries.shape[1]:
            vec = engine.catalog.mean_vectors(pair.file_id)[space]
        out[i] = vec / (np.linalg.norm(vec) or 1.0)
    return out


def train(
    queries: np.ndarray, targets: np.ndarray, groups: np.ndarray, p: TuneParams = TuneParams()
) -> tuple[np.ndarray, float, float]:
    """W trained from the identity; also the mean loss of the first and the last epoch."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(max(1, p.threads))
    gen = torch.Generator().manual_seed(p.seed)
    q_all = torch.from_numpy(np.ascontiguousarray(queries, np.float32))
    t_all = torch.from_numpy(np.ascontiguousarray(targets, np.float32))
    g_all = torch.from_numpy(np.asarray(groups, np.int64))
    d = q_all.shape[1]
    eye = torch.eye(d)
    w = torch.nn.Parameter(eye.clone())
    opt = torch.optim.Adam([w], lr=p.lr)
    n = q_all.shape[0]
    first = last = 0.0
    for epoch in range(p.epochs):
        order = torch.randperm(n, generator=gen)
        losses = []
        for start in range(0, n, p.batch):
            idx = order[start : start + p.batch]
            if idx.numel() < 2:
                continue
            q = F.normalize(q_all[idx] @ w.T, dim=1)
            logits = q @ t_all[idx].T / p.temperature
            g = g_all[idx]
            same = (g[:, None] == g[None, :]) & ~torch.eye(idx.numel(), dtype=torch.bool)
            logits = logits.masked_fill(same, float("-inf"))
            loss = F.cross_entropy(logits, torch.arange(idx.numel()))
            total = loss + p.identity_weight * ((w - eye) ** 2).sum()
            opt.zero_grad()
            total.backward()
            opt.step()
            losses.append(loss.item())
        mean = float(np.mean(losses)) if losses else 0.0
        first = mean if epoch == 0 else first
        last = mean
    return w.detach().numpy().astype(np.float32), first, last


# ---- evaluation ----------------------------------------------------------------------------


def evaluate(
    engine: Engine,
    space: str,
    asked: list[tuple[str, frozenset[int]]],
    adapter: adapters.Adapter | None,
) -> tuple[float, float]:
    """recall@10 and MRR@10 of `search` (literal words, the types of the space, full page)
    over (query, relevant file ids), with `adapter` as the space's only adapter (None: the
    base model)."""
    if not asked:
        return 0.0, 0.0
    saved = engine.adapters_override
    engine.adapters_override = {space: adapter} if adapter is not None else {}
    recall = mrr = 0.0
    try:
        for query, relevant in asked:
            hits = engine.search(
                query, k=EVAL_K, types=list(TYPES_IN_SPACE[space]), literal=True, cutoff=False
            )
            ranked = [h.file_id for h in hits]
            recall += len(relevant & set(ranked)) / len(relevant)
            rank = next((i for i, fid in enumerate(ranked, 1) if fid in relevant), None)
            mrr += 1.0 / rank if rank else 0.0
    finally:
        engine.adapters_override = saved
    return recall / len(asked), mrr / len(asked)


def grouped(pairs: list[Pair]) -> list[tuple[str, frozenset[int]]]:
    """Distinct queries (case-folded) with all the files they name."""
    by: dict[str, tuple[str, set[int]]] = {}
    for p in pairs:
        by.setdefault(p.query.casefold(), (p.query, set()))[1].add(p.file_id)
    return [(q, frozenset(ids)) for q, ids in by.values()]


def name_queries(
    engine: Engine, space: str, exclude: set[int], seed: int
) -> list[tuple[str, frozenset[int]]]:
    """An outside set when none is given: files of the space not in the pairs, each asked
    by the words of its file name (names with fewer than three letters are left out)."""
    import re

    types = set(TYPES_IN_SPACE[space])
    found = []
    for rec in engine.catalog.all_files():
        if rec.state != "indexed" or rec.type not in types or rec.id in exclude:
            continue
        words = " ".join(re.findall(r"[^\W\d_]+", Path(rec.path).stem))
        if sum(c.isalpha() for c in words) >= 3:
            found.append((words, frozenset({rec.id})))
    rng = random.Random(seed)
    return sorted(rng.sample(found, min(OUTSIDE_NAMES, len(found))))


def score(
    engine: Engine,
    space: str,
    name: str,
    asked: list[tuple[str, frozenset[int]]],
    adapter: adapters.Adapter,
) -> Score:
    r0, m0 = evaluate(engine, space, asked, None)
    r1, m1 = evaluate(engine, space, asked, adapter)
    return Score(name, len(asked), r0, r1, m0, m1)


# ---- the command ---------------------------------------------------------------------------


def check_space(engine: Engine, space: str) -> None:
    if space not in TUNE_SPACES:
        raise UserError(f"--space wants one of {', '.join(TUNE_SPACES)}, not '{space}'")
    if len(engine.store.cache(space)) == 0:
        raise UserError(f"the {space} space of this index holds no vectors: nothing to tune")


def tune(
    engine: Engine,
    csv_path: str | os.PathLike[str],
    space: str = "text",
    eval_share: float = 0.0,
    outside: str | os.PathLike[str] | None = None,
    params: TuneParams = TuneParams(),
) -> TuneReport:
    """Train, (optionally) evaluate and store the space's adapter; see the module doc."""
    check_space(engine, space)
    if not 0.0 <= eval_share < 1.0 or math.isnan(eval_share):
        raise UserError("--eval wants a share of the pairs between 0 and 1, like 0.2")
    pairs, problems = read_pairs(csv_path)
    usable, skipped = resolve_pairs(engine, pairs, space)
    lines = problems + skipped
    lines.sort(key=lambda s: int(s.split(":", 1)[0].split()[-1]))
    report = TuneReport(space, len(usable), lines)
    files = {p.file_id for p in usable}
    if len(usable) < 2 or len(files) < 2:
        raise UserError(
            f"tuning needs at least two pairs naming two different indexed files "
            f"(found {len(usable)} usable pair(s) of {len(pairs)}): each pair's other files "
            "are its negatives" + _first(report.skipped)
        )
    train_pairs, held = usable, []
    if eval_share > 0:
        train_pairs, held = split_by_file(usable, eval_share, params.seed)
        if len({p.file_id for p in train_pairs}) < 2 or not held:
            raise UserError(
                f"too few pairs to hold out {eval_share:g} of them and still train: "
                "give more pairs, or leave out --eval"
            )
    report.train_pairs, report.held_pairs = len(train_pairs), len(held)
    if engine.readonly:  # said before the training, not after it
        raise UserError("this index is opened read-only: tuning stores an adapter in it")
    t0 = time.perf_counter()
    q = query_rows(engine, space, [p.query for p in train_pairs])
    t = target_rows(engine, space, train_pairs, q)
    matrix, report.loss_before, report.loss_after = train(
        q, t, np.array([p.file_id for p in train_pairs]), params
    )
    report.seconds = time.perf_counter() - t0
    model = engine.config.model_key(space)
    info = {"pairs": len(train_pairs), "trained_at": time.time(), "source": os.fspath(csv_path)}
    trained = adapters.Adapter(space, model, None, matrix, info)
    if held:
        report.scores.append(score(engine, space, "held-out pairs", grouped(held), trained))
        if outside is not None:
            extra, extra_problems = read_pairs(outside)
            extra_ok, extra_skipped = resolve_pairs(engine, extra, space)
            seen = {p.query.casefold() for p in usable}
            asked = [(qq, r) for qq, r in grouped(extra_ok) if qq.casefold() not in seen]
            report.notes += [f"outside set: {s}" for s in (extra_problems + extra_skipped)[:5]]
            report.scores.append(score(engine, space, "outside queries", asked, trained))
        else:
            asked = name_queries(engine, space, files, params.seed)
            if asked:
                report.scores.append(score(engine, space, "file names (outside)", asked, trained))
            else:
                report.notes.append("no outside set: give --outside CSV to check for regressions")
    with engine.writer():
        adapters.save(engine.dir, engine.catalog, space, model, matrix, info)
    return report


def reset(engine: Engine, space: str) -> bool:
    """Remove the space's adapter: queries use the base model again."""
    if space not in TUNE_SPACES:
        raise UserError(f"--space wants one of {', '.join(TUNE_SPACES)}, not '{space}'")
    with engine.writer():
        return adapters.remove(engine.dir, engine.catalog, space)
