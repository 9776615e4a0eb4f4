"""Text queries embedded by an ONNX export of a space's query tower, on ONNX Runtime.

This is the query process's encoder: it imports onnxruntime, tokenizers and numpy only (no
torch, transformers, sentence-transformers or open_clip), so `searchengine search` starts in
a fraction of a second. Exports are written and checked against the full model by export.py;
the layout of one export folder:

    model.onnx       the query tower's graph, inputs named in query.json, output (batch, dim),
                     already optimised (ONNX Runtime's basic level: standard ONNX ops only)
    model-<L>.onnx   for fixed-length towers (CLIP): the same tower traced for L tokens, one
                     per length in query.json's `lengths`; a query whose tokens (up to and
                     including EOT) fit in L runs on the smallest such graph, padded to L
    model.onnx.data  the weights of every graph above, each tensor stored once, outside the
                     graphs: ONNX Runtime maps them into memory instead of copying them out of
                     a protobuf
    tokenizer.json   a `tokenizers` tokenizer, truncation and padding set
    query.json       what the runtime needs (see `ExportMeta`)

Opening a session is what a cold query pays for; `session_options` keeps it to graph loading
(ms) rather than optimisation, weight copies and pre-packing (150 ms for MiniLM). Of several
graphs only the smallest is opened at once, the others when a query first needs them.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from searchengine.encoders.base import normalise

log = logging.getLogger(__name__)

FORMAT = 3
"""Bump when the export layout or its meaning changes. 2: optimised graph, external weights.
3: shorter fixed-length graphs beside model.onnx (`lengths`), sharing one weights file."""
READABLE_FORMATS = (1, 2, 3)
"""Formats queries still run until the next index run replaces them with a `FORMAT` export
(1: the graph as torch wrote it, weights inside; optimised at each load, slower to open;
2: one graph, every CLIP query padded to the whole context)."""
OPTIMISED_SINCE = 2
"""Exports from this format on hold graphs optimised offline; older ones are optimised at load."""
MODEL_FILE = "model.onnx"
WEIGHTS_FILE = "model.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "query.json"
BATCH = 64


@dataclass
class ExportMeta:
    """query.json: how to tokenize and feed a query, and which model the export came from."""

    space: str
    identity: str
    model: str  # the configured model key, for people reading the folder
    dim: int
    inputs: list[str]  # ONNX inputs, fed in order: input_ids, attention_mask, token_type_ids
    max_length: int  # tokens per query, special tokens included
    pad_id: int
    pad_token: str
    fixed_length: bool = False  # pad every query to max_length (CLIP's context length)
    lengths: list[int] = field(default_factory=list)  # shorter fixed graphs, ascending
    refused: dict[str, str] = field(default_factory=dict)  # shorter graphs left out, and why
    clean: str = "none"  # "none", "strip", "open_clip:lower", "open_clip:whitespace"
    prefix: str = ""  # a prompt prepended to every query (sentence-transformers prompts)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 (written last)
    format: int = FORMAT

    def save(self, folder: Path) -> None:
        (folder / META_FILE).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ExportMeta:
        raw = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if raw.get("format") not in READABLE_FORMATS:
            raise ValueError(f"export format {raw.get('format')} is not one of {READABLE_FORMATS}")
        meta = cls(**raw)
        if meta.lengths and (
            not meta.fixed_length
            or meta.lengths != sorted(set(meta.lengths))
            or not 0 < meta.lengths[0] <= meta.lengths[-1] < meta.max_length
        ):
            raise ValueError(
                f"graph lengths {meta.lengths} do not fit max_length {meta.max_length}"
            )
        return meta


def graph_file(length: int | None) -> str:
    """The graph for queries of at most `length` tokens; None: the whole context's."""
    return MODEL_FILE if length is None else f"model-{length}.onnx"


PLAIN_TEXT = re.compile(r"[\x20-\x25\x27-\x7e\t\n\r]*")
"""Printable ASCII, tabs and line breaks, no `&`: text that ftfy.fix_text returns unchanged
(it rewrites mojibake, non-ASCII forms, control characters and, for `&`, HTML entities), so
the query process need not import it (tens of ms) for most queries."""


def _open_clip_clean(text: str, lower: bool) -> str:
    """open_clip's SimpleTokenizer cleaning (ftfy, HTML entities, whitespace), exactly."""
    if not PLAIN_TEXT.fullmatch(text):
        import ftfy  # pure Python; open_clip's own dependency

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    text = " ".join(text.split()).strip()
    return text.lower() if lower else text


def clean_text(text: str, how: str) -> str:
    if how == "none":
        return text
    if how == "strip":
        return text.strip()
    if how == "open_clip:lower":
        return _open_clip_clean(text, lower=True)
    if how == "open_clip:whitespace":
        return _open_clip_clean(text, lower=False)
    raise ValueError(f"unknown text cleaning '{how}'")


def threads() -> int:
    """`SEARCHENGINE_THREADS`, else every core, as the torch encoders use."""
    return int(os.environ.get("SEARCHENGINE_THREADS", "0") or 0) or (os.cpu_count() or 1)


def load_tokenizer(folder: Path, meta: ExportMeta) -> Any:
    """The export's tokenizer with truncation and padding set from query.json (the file
    carries them too; setting them again makes the runtime independent of how it was saved)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=meta.max_length)
    tokenizer.enable_padding(
        pad_id=meta.pad_id,
        pad_token=meta.pad_token,
        length=meta.max_length if meta.fixed_length else None,
    )
    return tokenizer


def session_options(optimise: bool = False) -> Any:
    """ONNX Runtime options for a query session: a cold `searchengine search` opens one per
    space, then embeds one or two short queries.

    The export's graph is optimised once, offline (`optimise=True` is for that step only), so
    loading skips it. Weight pre-packing is off: it costs more at load (30 ms for MiniLM) than
    it saves on a handful of queries (about 2 ms each). Idle threads sleep rather than spin, so
    a query does not burn a second core waiting for work."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        if optimise
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3  # errors only: ORT's notes are not our output
    options.add_session_config_entry("session.disable_prepacking", "1")
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxQueryEncoder:
    """Embeds text queries with an exported query tower; the same rows as the full model."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.meta = ExportMeta.load(self.folder)
        self.space = self.meta.space
        self.dim = int(self.meta.dim)
        self.tokenizer = load_tokenizer(self.folder, self.meta)
        self.lengths: list[int] = [*self.meta.lengths, self.meta.max_length]
        """Token lengths of the graphs, ascending; the last one is model.onnx's."""
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._open(self.lengths[0])  # a broken export fails here, where callers expect it

    def session(self, length: int) -> Any:
        """The ONNX Runtime session of the graph for `length` tokens, opened on first use."""
        with self._lock:
            if length not in self._sessions:
                import onnxruntime as ort

                if length not in self.lengths:
                    raise ValueError(f"no graph for {length} tokens in {self.folder}")
                name = graph_file(None if length == self.meta.max_length else length)
                self._sessions[length] = ort.InferenceSession(
                    str(self.folder / name),
                    sess_options=session_options(optimise=self.meta.format < OPTIMISED_SINCE),
                    providers=["CPUExecutionProvider"],
                )
            return self._sessions[length]

    def _open(self, length: int) -> int:
        """The graph for queries of `length` tokens opened, or if a shorter graph cannot be
        opened the next one that can (queries then cost more, never fail); its length."""
        while True:
            try:
                self.session(length)
                return length
            except Exception as exc:
                if length == self.meta.max_length:
                    raise
                log.warning(
                    "%s: the %d-token query graph is unusable (%s)", self.folder, length, exc
                )
                with self._lock:  # a new list: other threads may be routing on the old one
                    self.lengths = [n for n in self.lengths if n != length]
                length = self.graph_length(length)

    def encode(self, texts: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The ONNX inputs for the whole context, and each query's token count."""
        meta = self.meta
        prepared = [meta.prefix + clean_text(str(t), meta.clean) for t in texts]
        encodings = self.tokenizer.encode_batch(prepared)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        counts = np.asarray([sum(e.attention_mask) for e in encodings], dtype=np.int64)
        feeds = {name: np.asarray(columns[name], dtype=np.int64) for name in meta.inputs}
        return feeds, counts

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Queries -> the inputs of model.onnx (int64 arrays of shape (batch, tokens))."""
        return self.encode(texts)[0]

    def graph_length(self, tokens: int) -> int:
        """The smallest graph that holds a query of `tokens` tokens (EOT included)."""
        return next((n for n in self.lengths if tokens <= n), self.lengths[-1])

    def _run(self, length: int, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if length != self.meta.max_length:  # the padding beyond `length` is not looked at
            feeds = {name: np.ascontiguousarray(a[:, :length]) for name, a in feeds.items()}
        session = self.session(length)
        return session.run([session.get_outputs()[0].name], feeds)[0]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Each query on the smallest graph that holds its tokens (one run per graph used)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            feeds, counts = self.encode(list(texts[start : start + BATCH]))
            chosen = np.asarray([self.graph_length(int(n)) for n in counts])
            for length in np.unique(chosen):
                rows = np.flatnonzero(chosen == length)
                part = {name: a[rows] for name, a in feeds.items()}
                out[start + rows] = self._run(self._open(int(length)), part)
        return normalise(out)

    def embed_with(self, length: int, texts: list[str]) -> np.ndarray:
        """Queries on the graph for `length` tokens, each of which must fit in it (how the
        export is checked graph by graph)."""
        feeds, counts = self.encode(list(texts))
        if len(texts) and int(counts.max()) > length:
            raise ValueError(f"a query of {int(counts.max())} tokens does not fit in {length}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self._run(length, feeds))

    def embed_items(self, payloads: list[Any]) -> np.ndarray:
        raise NotImplementedError(
            "an ONNX query encoder embeds text queries only; index with the full model"
        )
