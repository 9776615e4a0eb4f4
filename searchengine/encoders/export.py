"""Export a space's query tower to ONNX, at index time, and keep it only if it matches.

Runs where the full encoder is loaded anyway (indexing), so torch is allowed here. Each export
is traced by torch, optimised and saved with external weights by ONNX Runtime (the layout in
onnx_query.py) in a temporary folder beside its final place, checked as queries will load it
against the full model on `QUERY_SET` (same token ids, cosine >= `MIN_COSINE` for every
query, alone and batched), and only then renamed into place: a kill leaves either no export
or a whole, checked one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchengine.encoders.base import Encoder
from searchengine.encoders.identity import sha256_file
from searchengine.encoders.onnx_query import (
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    ExportMeta,
    OnnxQueryEncoder,
    session_options,
)

log = logging.getLogger(__name__)

MIN_COSINE = 0.999
OPSET = 17
STALE_TEMP_S = 3600.0  # a temporary export folder this old was left by a killed run

QUERY_SET: tuple[str, ...] = (
    "a dog playing in the snow",
    "quarterly budget meeting notes",
    "Jupiter's moons were discovered by Galileo in 1610",
    "tax return 2023",
    "3.14159 26535 89793 -42 +7 1e-9",
    "12:30 pm on 2024-01-03",
    "Café crème brûlée à Paris, naïve résumé",
    "東京の夜景と富士山",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "emoji 🐶🎉 party",
    "“curly quotes” and the ﬁle ligature",
    "ＡＢＣ１２３ full width",
    "HTML &amp; entities &lt;b&gt;bold&lt;/b&gt;",
    "UPPER CASE QUERY WITH Mixed case",
    "  tabs\tand\nnewlines   ",
    "e-mail someone@example.com or https://example.org/path?q=1&x=2",
    "!!!",
    "?",
    "-",
    " ".join(["searching"] * 600),
    " ".join(f"word{i} {i * 37 % 1000} naïve" for i in range(300)),
)
"""Fixed queries the export must reproduce: plain, numbers, non-ASCII scripts, emoji, text
that open_clip's ftfy cleaning rewrites, punctuation only, and longer than any max length."""


class ExportRejected(Exception):
    """The export cannot reproduce the full model; the reason is kept so it is not retried."""


@dataclass
class Prepared:
    """What one space's exporter hands to the common write-and-check steps."""

    module: Any  # torch.nn.Module: query token arrays -> (batch, dim) rows
    sample: list[Any]  # example input tensors, in `meta.inputs` order
    tokenizer: Any  # tokenizers.Tokenizer
    meta: ExportMeta
    reference_ids: Callable[[list[str]], list[list[int]]]  # the full model's token ids


def _unpadded(ids: Any, mask: Any | None) -> list[list[int]]:
    ids = np.asarray(ids)
    if mask is None:
        return [list(map(int, row)) for row in ids]
    mask = np.asarray(mask).astype(bool)
    return [list(map(int, row[keep])) for row, keep in zip(ids, mask, strict=True)]


def _backend_copy(hf_tokenizer: Any) -> Any:
    """A standalone copy of a transformers tokenizer's `tokenizers` backend."""
    from tokenizers import Tokenizer

    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportRejected(f"tokenizer {type(hf_tokenizer).__name__} has no tokenizers backend")
    return Tokenizer.from_str(backend.to_str())


def _sentence_tower(model: Any, names: list[str]) -> Any:
    import torch

    class SentenceTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

    return SentenceTower().eval()


def _clip_tower(model: Any) -> Any:
    import torch

    class ClipTextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any) -> Any:
            return self.model.encode_text(input_ids)

    return ClipTextTower().eval()


def _clap_tower(model: Any) -> Any:
    import torch

    from searchengine.encoders.clap import _pooled

    class ClapTextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return _pooled(
                self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            )

    return ClapTextTower().eval()


def _prepare_text(encoder: Any) -> Prepared:
    st = encoder.model
    hf = st.tokenizer
    preprocess = getattr(st, "preprocess", None) or st.tokenize
    features = preprocess(["a query", "another longer query"])
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in features]
    if "input_ids" not in names:
        raise ExportRejected("sentence-transformers model does not take token ids")
    prompt = ""
    prompt_name = getattr(st, "default_prompt_name", None)
    if prompt_name:
        prompt = (getattr(st, "prompts", None) or {}).get(prompt_name) or ""
    max_length = int(st.get_max_seq_length() or hf.model_max_length)
    meta = ExportMeta(
        space="text",
        identity="",
        model="",
        dim=int(encoder.dim),
        inputs=names,
        max_length=max_length,
        pad_id=int(hf.pad_token_id or 0),
        pad_token=str(hf.pad_token),
        prefix=prompt,
    )

    def reference_ids(texts: list[str]) -> list[list[int]]:
        out = preprocess([prompt + t for t in texts] if prompt else texts)
        return _unpadded(out["input_ids"], out.get("attention_mask"))

    return Prepared(
        module=_sentence_tower(st, names),
        sample=[features[n] for n in names],
        tokenizer=_backend_copy(hf),
        meta=meta,
        reference_ids=reference_ids,
    )


# open_clip's SimpleTokenizer pattern; its special tokens are matched as added tokens instead.
CLIP_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"


def clip_tokenizer(simple: Any) -> Any:
    """A `tokenizers` equivalent of open_clip's SimpleTokenizer, from its own vocab and merges
    (byte-level BPE with an end-of-word suffix, SOT/EOT around every query)."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, processors

    merges = [pair for pair, _ in sorted(simple.bpe_ranks.items(), key=lambda kv: kv[1])]
    tokenizer = Tokenizer(
        models.BPE(
            vocab=dict(simple.encoder),
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
        )
    )
    specials = [simple.decoder[i] for i in simple.all_special_ids]
    tokenizer.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    sot, eot = simple.decoder[simple.sot_token_id], simple.decoder[simple.eot_token_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{sot} $A {eot}",
        special_tokens=[(sot, simple.sot_token_id), (eot, simple.eot_token_id)],
    )
    return tokenizer


def _prepare_clip(encoder: Any) -> Prepared:
    from open_clip.tokenizer import SimpleTokenizer

    simple = encoder.tokenizer
    if not isinstance(simple, SimpleTokenizer):
        raise ExportRejected(f"open_clip tokenizer {type(simple).__name__} is not supported")
    if getattr(simple, "reduction_fn", None) is not None:
        raise ExportRejected("open_clip tokenizer reduces long text at random")
    clean = {"_clean_lower": "open_clip:lower", "_clean_whitespace": "open_clip:whitespace"}.get(
        getattr(simple.clean_fn, "__name__", "")
    )
    if clean is None:
        raise ExportRejected(f"open_clip text cleaning {simple.clean_fn} is not supported")
    context = int(simple.context_length)
    meta = ExportMeta(
        space="clip",
        identity="",
        model="",
        dim=int(encoder.dim),
        inputs=["input_ids"],
        max_length=context,
        pad_id=0,  # open_clip pads with zeros
        pad_token=simple.decoder[0],
        fixed_length=True,  # the positional embedding spans the whole context
        clean=clean,
    )
    return Prepared(
        module=_clip_tower(encoder.model),
        sample=[simple(["a photo of a dog", "two"])],
        tokenizer=clip_tokenizer(simple),
        meta=meta,
        reference_ids=lambda texts: _unpadded(simple(texts).numpy(), None),
    )


def _prepare_clap(encoder: Any) -> Prepared:
    hf = encoder.tokenizer
    max_length = int(hf.model_max_length)
    if max_length > 100_000:  # "no limit" in transformers; the positions are the real one
        max_length = int(encoder.model.config.text_config.max_position_embeddings) - 2
    sample = hf(["a dog barking", "rain"], padding=True, truncation=True, return_tensors="pt")
    meta = ExportMeta(
        space="clap",
        identity="",
        model="",
        dim=int(encoder.dim),
        inputs=["input_ids", "attention_mask"],
        max_length=max_length,
        pad_id=int(hf.pad_token_id),
        pad_token=str(hf.pad_token),
    )

    def reference_ids(texts: list[str]) -> list[list[int]]:
        out = hf(texts, padding=True, truncation=True, return_tensors="np")
        return _unpadded(out["input_ids"], out["attention_mask"])

    return Prepared(
        module=_clap_tower(encoder.model),
        sample=[sample["input_ids"], sample["attention_mask"]],
        tokenizer=_backend_copy(hf),
        meta=meta,
        reference_ids=reference_ids,
    )


PREPARERS: dict[str, Callable[[Any], Prepared]] = {
    "text": _prepare_text,
    "clip": _prepare_clip,
    "clap": _prepare_clap,
}


def _export_onnx(prepared: Prepared, path: Path) -> None:
    import torch

    names = prepared.meta.inputs
    axes: dict[str, dict[int, str]] = {
        name: ({0: "batch"} if prepared.meta.fixed_length else {0: "batch", 1: "tokens"})
        for name in names
    }
    axes["embedding"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            prepared.module,
            tuple(prepared.sample),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
        )


def _optimise(raw: Path, target: Path) -> None:
    """Save the exported graph optimised at ONNX Runtime's basic level (constant folding and
    fusions into standard ONNX ops, so any runtime that reads the opset runs it), with the
    weights in `WEIGHTS_FILE` beside it, so that query sessions load it without optimising
    and map the weights instead of copying them."""
    import onnxruntime as ort

    options = session_options(optimise=True)
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", WEIGHTS_FILE
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    ort.InferenceSession(str(raw), sess_options=options, providers=["CPUExecutionProvider"])


def _check(prepared: Prepared, full: Encoder, folder: Path) -> None:
    """Raise ExportRejected unless the export reproduces the full model on QUERY_SET."""
    queries = list(QUERY_SET)
    runtime = OnnxQueryEncoder(folder)
    expected_ids = prepared.reference_ids(queries)
    encoded = runtime.tokenize(queries)
    got_ids = _unpadded(encoded["input_ids"], encoded.get("attention_mask"))
    for query, want, got in zip(queries, expected_ids, got_ids, strict=True):
        if want != got:
            raise ExportRejected(f"token ids differ from the full model's on {query[:40]!r}")
    reference = full.embed_queries(queries)
    batched = runtime.embed_queries(queries)
    alone = np.concatenate([runtime.embed_queries([q]) for q in queries])
    for rows, how in ((batched, "batched"), (alone, "alone")):
        cosines = np.sum(rows * reference, axis=1)
        worst = int(np.argmin(cosines))
        if not cosines[worst] >= MIN_COSINE:
            raise ExportRejected(
                f"cosine {cosines[worst]:.5f} < {MIN_COSINE} vs the full model on "
                f"{queries[worst][:40]!r} ({how})"
            )


def clear_stale_temps(cache: Path) -> None:
    """Remove temporary export folders that a killed run left behind."""
    now = time.time()
    for entry in cache.glob(".*.tmp"):
        try:
            if entry.is_dir() and now - entry.stat().st_mtime > STALE_TEMP_S:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def write_export(full: Encoder, target: Path, identity: str, model: str) -> None:
    """Export `full`'s query tower to `target` (a folder that must not exist yet), checked.

    Raises ExportRejected when the space's model cannot be exported faithfully; any other
    exception is an environment failure (disk full, exporter missing), not a verdict.
    """
    space = full.space
    prepared = PREPARERS[space](full)
    prepared.meta.identity = identity
    prepared.meta.model = model
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        prepared.tokenizer.save(str(staging / TOKENIZER_FILE))
        raw = staging / ".raw"  # torch's graph, and any weight files it writes beside it
        raw.mkdir()
        _export_onnx(prepared, raw / MODEL_FILE)
        _optimise(raw / MODEL_FILE, staging / MODEL_FILE)
        shutil.rmtree(raw)
        names = (MODEL_FILE, WEIGHTS_FILE, TOKENIZER_FILE)
        prepared.meta.files = {name: sha256_file(staging / name) for name in names}
        prepared.meta.save(staging)
        _check(prepared, full, staging)  # the files as queries will load them
        for name in (*names, META_FILE):
            os.chmod(staging / name, 0o644)
        os.chmod(staging, 0o755)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / MODEL_FILE).is_file():  # a concurrent run may have won the race
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
