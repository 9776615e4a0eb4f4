"""Export a space's query tower to ONNX, at index time, and keep it only if it matches.

Runs where the full encoder is loaded anyway (indexing), so torch is allowed here. Each export
is traced by torch, optimised by ONNX Runtime, its weights moved into one shared file (the
layout in onnx_query.py), in a temporary folder beside its final place, checked as queries
will load it against the full model on `QUERY_SET` (same token ids, cosine >= `MIN_COSINE`
for every query, alone and batched, on every graph it fits), and only then renamed into place:
a kill leaves either no export or a whole, checked one.

CLIP's text tower is traced for a fixed context (77 tokens: the tracer bakes the length into
attention's reshapes), so besides that graph it is traced again for `SHORT_LENGTHS`: its mask
is causal and it pools at EOT, so a query's vector depends only on its tokens up to EOT and
the tower cut to L positions gives the same vector for any query that fits in L, at a fraction
of the cost. A shorter graph that fails the check is left out; the whole-context one must pass.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    graph_file,
    session_options,
)

log = logging.getLogger(__name__)

MIN_COSINE = 0.999
OPSET = 17
STALE_TEMP_S = 3600.0  # a temporary export folder this old was left by a killed run
SHORT_LENGTHS: tuple[int, ...] = (16, 32)
"""Token lengths of CLIP's shorter graphs (EOT included): most queries fit in 16. ViT-B-32 on
a loaded 2-core machine: ~46 ms a query on the 16- or 32-token graph, ~90 ms on the 77-token
one (below 32 tokens the time is mostly reading the weights, so a shorter graph gains little);
the graphs share their weights, so each costs ~0.2 MB of disk and ~8 s of export."""
WEIGHT_ALIGN = 4096  # each stored tensor starts on a page (ONNX Runtime maps each one)

FOX = ("the quick brown fox jumps over the lazy dog " * 9).split()  # one CLIP token a word
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
    "an old wooden fishing boat pulled up on a pebble beach at low tide, nets drying in the "
    "wind, gulls circling overhead and a lighthouse on the cliff behind it under a grey sky",
    *(" ".join(FOX[:n]) for n in (14, 15, 30, 31, 75, 76)),  # CLIP: 16, 17, 32, 33, 77, 78
    " ".join(["searching"] * 600),
    " ".join(f"word{i} {i * 37 % 1000} naïve" for i in range(300)),
)
"""Fixed queries the export must reproduce: plain, numbers, non-ASCII scripts, emoji, text
that open_clip's ftfy cleaning rewrites, punctuation only, long enough for each of CLIP's
graphs, and longer than any max length."""


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
    short: dict[int, Any] = field(default_factory=dict)  # length -> the tower cut to it
    refused: dict[int, str] = field(default_factory=dict)  # shorter graphs not made, and why


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


class Unhandled(Exception):
    """An open_clip text tower layout whose shorter graphs this module cannot build."""


POOLS_AT_EOT = ("argmax", "eos", "first")  # pooled positions that do not move with the length


def _text_parts(model: Any) -> dict[str, Any]:
    """What open_clip's encode_text uses, for the two layouts it builds (CLIP keeps the text
    tower's parts on itself; CustomTextCLIP keeps a TextTransformer in `.text`)."""
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.transformer import TextTransformer

    if isinstance(model, CLIP):
        parts = {
            "token_embedding": model.token_embedding,
            "positional_embedding": model.positional_embedding,
            "transformer": model.transformer,
            "ln_final": model.ln_final,
            "projection": model.text_projection,
            "attn_mask": model.attn_mask,
            "pool_type": model.text_pool_type,
            "eos_id": getattr(model, "text_eos_id", None),
        }
    elif isinstance(model, CustomTextCLIP) and type(model.text) is TextTransformer:
        text = model.text
        if text.cls_emb is not None:  # its class token sits at position L: moves with L
            raise Unhandled("the text tower appends a class token")
        if text.use_pad_mask:
            raise Unhandled("the text tower masks padding")
        parts = {
            "token_embedding": text.token_embedding,
            "positional_embedding": text.positional_embedding,
            "transformer": text.transformer,
            "ln_final": text.ln_final,
            "projection": text.text_projection,
            "attn_mask": text.attn_mask,
            "pool_type": text.pool_type,
            "eos_id": text.eos_id,
        }
    else:
        text = getattr(model, "text", None)
        raise Unhandled(f"text tower {type(text or model).__name__} is not handled")
    if parts["attn_mask"] is None:  # bidirectional: padding after EOT changes the vector
        raise Unhandled("the text tower has no causal mask")
    if parts["pool_type"] not in POOLS_AT_EOT:
        raise Unhandled(f"the text tower pools '{parts['pool_type']}'")
    return parts


def _clip_prefix_tower(model: Any, length: int) -> Any:
    """open_clip's encode_text on the first `length` positions: the positional embedding and
    the causal mask cut to `length`, the rest as open_clip computes it."""
    import torch
    from open_clip.transformer import text_global_pool

    parts = _text_parts(model)
    if length > parts["positional_embedding"].shape[0]:
        raise Unhandled(f"{length} tokens exceed the context")

    class ClipPrefixTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # its weights, under the names the whole-context graph uses

        def forward(self, input_ids: Any) -> Any:
            cast = parts["transformer"].get_cast_dtype()
            x = parts["token_embedding"](input_ids).to(cast)
            x = x + parts["positional_embedding"][:length].to(cast)
            x = parts["transformer"](x, attn_mask=parts["attn_mask"][:length, :length])
            x = parts["ln_final"](x)
            x = text_global_pool(x, input_ids, parts["pool_type"], eos_token_id=parts["eos_id"])
            projection = parts["projection"]
            if isinstance(projection, torch.nn.Linear):
                x = projection(x)
            elif projection is not None:
                x = x @ projection
            return x

    return ClipPrefixTower().eval()


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
    short: dict[int, Any] = {}
    refused: dict[int, str] = {}
    for length in (n for n in SHORT_LENGTHS if n < context):
        try:
            short[length] = _clip_prefix_tower(encoder.model, length)
        except Unhandled as exc:
            refused[length] = str(exc)
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
        short=short,
        refused=refused,
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


def _export_onnx(prepared: Prepared, path: Path, length: int | None = None) -> None:
    """Trace the tower (for `length` tokens: its cut to that length) into `path`."""
    import torch

    module, sample = prepared.module, prepared.sample
    if length is not None:
        module, sample = prepared.short[length], [t[:, :length] for t in sample]
    names = prepared.meta.inputs
    axes: dict[str, dict[int, str]] = {
        name: ({0: "batch"} if prepared.meta.fixed_length else {0: "batch", 1: "tokens"})
        for name in names
    }
    axes["embedding"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            tuple(sample),
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


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


class SharedWeights:
    """One weights file for several graphs of the same tower: each distinct tensor is stored
    once (the graphs differ only in a few small folded constants), page-aligned."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._stored: dict[bytes, tuple[int, int]] = {}

    def add(self, source: Path, target: Path) -> None:
        """Write graph `source` (external weights beside it) as `target`, its tensors moved
        into this file."""
        import onnx

        model = onnx.load(str(source), load_external_data=False)
        for tensor in _tensors(model.graph):
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {entry.key: entry.value for entry in tensor.external_data}
            with open(source.parent / info["location"], "rb") as handle:
                handle.seek(int(info.get("offset", 0)))
                data = handle.read(int(info["length"]) if "length" in info else -1)
            key = hashlib.sha256(data).digest()
            if key not in self._stored:
                self._out.write(b"\0" * (-self._out.tell() % WEIGHT_ALIGN))
                self._stored[key] = (self._out.tell(), len(data))
                self._out.write(data)
            offset, size = self._stored[key]
            del tensor.external_data[:]
            for name, value in (("location", WEIGHTS_FILE), ("offset", offset), ("length", size)):
                entry = tensor.external_data.add()
                entry.key, entry.value = name, str(value)
        self._out.flush()
        target.write_bytes(model.SerializeToString())

    def close(self) -> None:
        self._out.close()


def _add_graph(prepared: Prepared, raw: Path, length: int | None, weights: SharedWeights) -> None:
    """Trace, optimise and store one graph into the folder of `weights`."""
    work = raw / (str(length) if length else "context")
    (work / "torch").mkdir(parents=True)
    _export_onnx(prepared, work / "torch" / MODEL_FILE, length)
    _optimise(work / "torch" / MODEL_FILE, work / MODEL_FILE)
    shutil.rmtree(work / "torch")
    weights.add(work / MODEL_FILE, weights.path.parent / graph_file(length))
    shutil.rmtree(work)


def _mismatch(rows: np.ndarray, reference: np.ndarray, queries: list[str], how: str) -> str | None:
    """Why `rows` are not the full model's, or None when every cosine reaches MIN_COSINE."""
    if not len(rows):
        return None
    cosines = np.sum(rows * reference, axis=1)
    worst = int(np.argmin(cosines))
    if cosines[worst] >= MIN_COSINE:
        return None
    return (
        f"cosine {cosines[worst]:.5f} < {MIN_COSINE} vs the full model on "
        f"{queries[worst][:40]!r} ({how})"
    )


def _check(prepared: Prepared, reference: np.ndarray, folder: Path) -> dict[int, str]:
    """Raise ExportRejected unless the export reproduces the full model's `reference` rows
    on QUERY_SET; return the shorter graphs that do not, with why.

    Each graph runs every query that fits in it batched, and alone those it is chosen for;
    then all queries run together as queries do, each on its graph."""
    queries = list(QUERY_SET)
    runtime = OnnxQueryEncoder(folder)
    expected_ids = prepared.reference_ids(queries)
    encoded, counts = runtime.encode(queries)
    got_ids = _unpadded(encoded["input_ids"], encoded.get("attention_mask"))
    for query, want, got in zip(queries, expected_ids, got_ids, strict=True):
        if want != got:
            raise ExportRejected(f"token ids differ from the full model's on {query[:40]!r}")
    failed: dict[int, str] = {}
    for length in runtime.lengths:
        fits = [i for i, n in enumerate(counts) if n <= length]
        chosen = [i for i in fits if runtime.graph_length(int(counts[i])) == length]
        batched = runtime.embed_with(length, [queries[i] for i in fits])
        alone = [runtime.embed_with(length, [queries[i]]) for i in chosen]
        reason = _mismatch(
            batched, reference[fits], [queries[i] for i in fits], f"batched, {length} tokens"
        ) or _mismatch(
            np.concatenate(alone) if alone else np.zeros((0, runtime.dim), np.float32),
            reference[chosen],
            [queries[i] for i in chosen],
            f"alone, {length} tokens",
        )
        if reason is None:
            continue
        if length == runtime.lengths[-1]:
            raise ExportRejected(reason)
        failed[length] = reason
    if not failed:
        reason = _mismatch(runtime.embed_queries(queries), reference, queries, "batched")
        if reason is not None:
            raise ExportRejected(reason)
    return failed


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
    exception is an environment failure (disk full, exporter missing), not a verdict. Shorter
    graphs that cannot be traced or do not match are left out (`refused` in query.json)."""
    space = full.space
    prepared = PREPARERS[space](full)
    meta = prepared.meta
    meta.identity = identity
    meta.model = model
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        prepared.tokenizer.save(str(staging / TOKENIZER_FILE))
        raw = staging / ".raw"  # torch's graphs and ONNX Runtime's, before they are stored
        weights = SharedWeights(staging / WEIGHTS_FILE)
        refused = {str(n): why for n, why in prepared.refused.items()}
        kept: list[int] = []
        try:
            _add_graph(prepared, raw, None, weights)
            for length in sorted(prepared.short):
                try:
                    _add_graph(prepared, raw, length, weights)
                except OSError:  # disk full: the whole export is retried on the next run
                    raise
                except Exception as exc:  # the tracer or optimiser refused this cut
                    first = (str(exc).splitlines() or [type(exc).__name__])[0]
                    refused[str(length)] = f"export failed: {first}"
                    shutil.rmtree(raw / str(length), ignore_errors=True)
                else:
                    kept.append(length)
        finally:
            weights.close()
        shutil.rmtree(raw, ignore_errors=True)
        reference = full.embed_queries(list(QUERY_SET))
        while True:
            meta.lengths = kept
            meta.refused = refused
            names = (MODEL_FILE, *map(graph_file, kept), WEIGHTS_FILE, TOKENIZER_FILE)
            meta.files = {name: sha256_file(staging / name) for name in names}
            meta.save(staging)
            failed = _check(prepared, reference, staging)  # the files as queries load them
            if not failed:
                break
            for length, reason in failed.items():
                # Its few tensors of its own stay in the weights file, unreferenced (KB).
                log.warning("%s: the %d-token query graph is left out: %s", space, length, reason)
                refused[str(length)] = reason
                kept.remove(length)
                (staging / graph_file(length)).unlink()
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
