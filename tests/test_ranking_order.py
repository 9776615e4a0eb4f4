"""No ranking step turns distinct similarities into ties, and no tie is broken by a name
(issue 17): files named differently rank the same; `similar` compares documents as wholes;
MMR and the fusion keep the raw order; `--min-score` stops early."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from searchengine import Engine
from searchengine.search import Query, Ranker, RankParams, order_hits
from searchengine.types import Hit
from tests.conftest import write_corpus

DOCS = {
    "a.txt": "The violin teacher tuned the strings before the evening lesson.",
    "b.txt": "Our bakery sells sourdough bread, rye loaves and butter croissants.",
    "c.txt": "The harbour cranes unloaded containers from the cargo ship at dawn.",
    "d.txt": "Beekeepers check the hives for the queen and harvest honey in August.",
    "e.txt": "The chess opening known as the Sicilian defence starts with c5.",
    "f.txt": "Solar panels on the roof charge the battery during sunny afternoons.",
    "g.txt": "The train timetable changes in December; the night train is cancelled.",
    "h.txt": "Pottery class: centre the clay on the wheel and keep your hands wet.",
}
# the same files under names whose alphabetical order is reversed and shuffled
RENAMED = {name: f"{chr(ord('z') - i)}-{i * 7 % 5}.txt" for i, name in enumerate(DOCS)}


@pytest.fixture(scope="module")
def two_indexes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    base = tmp_path_factory.mktemp("order")
    one = write_corpus(base / "one", DOCS)
    two = write_corpus(base / "two", {RENAMED[k]: v for k, v in DOCS.items()})
    for docs, index in ((one, base / "i1"), (two, base / "i2")):
        with Engine(index, create=True) as eng:
            eng.index([docs])
    return one, base / "i1", two, base / "i2"


def _content_order(hits: list[Hit]) -> list[str]:
    return [Path(h.path).read_text() for h in hits]


def test_renamed_files_rank_the_same(two_indexes) -> None:
    one, i1, two, i2 = two_indexes
    with Engine(i1, readonly=True) as e1, Engine(i2, readonly=True) as e2:
        for name in ("a.txt", "d.txt"):
            s1 = e1.similar(one / name, k=8, include_self=True)
            s2 = e2.similar(two / RENAMED[name], k=8, include_self=True)
            assert len(s1) == 8
            assert _content_order(s1) == _content_order(s2)
            # most of the page sits under the display floor: still distinct raw scores
            assert sum(h.score == 0.0 for h in s1) >= 2
            raws = [h.raw_score for h in s1]
            assert raws == sorted(raws, reverse=True)
        for query in ("music lessons", "something to eat", "zzz qqq"):
            q1 = e1.search(query, k=8, diverse=False)
            q2 = e2.search(query, k=8, diverse=False)
            assert _content_order(q1) == _content_order(q2)


def test_similar_compares_documents_as_wholes(two_indexes) -> None:
    one, i1, _, _ = two_indexes
    with Engine(i1, readonly=True) as eng:
        records = {Path(r.path).name: r for r in eng.catalog.all_files()}
        example = eng.catalog.mean_vectors(records["c.txt"].id)["text"]
        expected = sorted(
            DOCS,
            key=lambda n: -float(eng.catalog.mean_vectors(records[n].id)["text"] @ example),
        )
        hits = eng.similar(one / "c.txt", k=8, types=["text"], include_self=True)
        assert [Path(h.path).name for h in hits] == expected
        for h in hits:
            vec = eng.catalog.mean_vectors(records[Path(h.path).name].id)["text"]
            assert h.raw_score == pytest.approx(float(vec @ example), abs=1e-4)
        assert hits[1].segments and hits[1].segments[0].text  # the passage shown


def test_order_hits_uses_raw_score_then_catalog_order_never_names() -> None:
    hits = [
        Hit(path="/a", type="text", score=0.0),
        Hit(path="/b", type="text", score=0.0),
        Hit(path="/c", type="text", score=0.5),
    ]
    for h, raw, fid in zip(hits, (-0.2, 0.1, 0.5), (1, 2, 3), strict=True):
        h.raw_score, h.file_id = raw, fid
    assert [h.path for h in order_hits(hits)] == ["/c", "/b", "/a"]
    hits[0].raw_score = hits[1].raw_score = 0.1
    hits[0].file_id, hits[1].file_id = 9, 4
    assert [h.path for h in order_hits(hits)] == ["/c", "/b", "/a"]


def _fake_ranker(vectors: dict[int, np.ndarray], params: RankParams | None = None) -> Ranker:
    catalog = SimpleNamespace(vector_map=lambda ids, level="segment": {i: vectors[i] for i in ids})
    store = SimpleNamespace(catalog=catalog)
    return Ranker(store, lambda space: None, {}, params or RankParams())  # type: ignore[arg-type]


def test_mmr_moves_near_duplicates_down_and_keeps_ties_in_order() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    twin = base[0] + 0.01 * rng.normal(size=16).astype(np.float32)
    vectors = {i + 1: base[i] for i in range(6)} | {7: twin / np.linalg.norm(twin)}
    hits = []
    for i, (sid, score) in enumerate([(1, 0.9), (7, 0.6), (2, 0.5), (3, 0.5), (4, 0.5)]):
        h = Hit(path=f"/z{9 - i}", type="text", score=score)
        h.best_segment, h.file_id, h.raw_score = sid, i, score
        hits.append(h)
    out = _fake_ranker(vectors).diversify(hits, 5)
    order = [h.best_segment for h in out]
    assert order[0] == 1 and order[-1] == 7  # the near duplicate goes last
    assert order[1:4] == [2, 3, 4]  # equal scores keep the ranked order, whatever the names
    big = [Hit(path=f"/p{i}", type="text", score=1 - i / 1000) for i in range(600)]
    rows = rng.normal(size=(600, 16)).astype(np.float32)
    many = {i + 1: v / np.linalg.norm(v) for i, v in enumerate(rows)}
    for i, h in enumerate(big):
        h.best_segment = i + 1
    ranked = _fake_ranker(many, RankParams(near_duplicate=0.999)).diversify(big, 200)
    assert [h.path for h in ranked] == [h.path for h in big]  # nothing near: order kept


def test_min_score_stops_when_no_unseen_candidate_can_pass(two_indexes, monkeypatch) -> None:
    _, i1, _, _ = two_indexes
    with Engine(i1, readonly=True) as eng:
        ranker = eng.ranker()
        rounds = []
        real = ranker._rank

        def counting(q, vecs, fetch):
            rounds.append(fetch)
            return real(q, vecs, fetch)

        monkeypatch.setattr(ranker, "_rank", counting)
        hits = ranker.run_query(Query(text="violin strings", k=3, min_score=0.99))
        assert hits == [] and len(rounds) == 1


def test_duplicates_list_orders_near_groups_by_similarity_not_names(tmp_path: Path) -> None:
    import os

    from searchengine.config import IndexConfig
    from searchengine.duplicates import find_duplicates
    from searchengine.store.catalog import NewFile
    from searchengine.types import Segment

    rng = np.random.default_rng(3)
    base = rng.normal(size=(3, 64)).astype(np.float32)

    def near(v: np.ndarray, cos: float) -> np.ndarray:
        noise = rng.normal(size=v.shape).astype(np.float32)
        noise -= (noise @ v) / (v @ v) * v
        u, w = v / np.linalg.norm(v), noise / np.linalg.norm(noise)
        return cos * u + np.sqrt(1 - cos**2) * w

    vectors = {  # "a" names sort first but are the less alike pair
        "a1.txt": base[0] / np.linalg.norm(base[0]),
        "a2.txt": near(base[0], 0.96),
        "z1.txt": base[1] / np.linalg.norm(base[1]),
        "z2.txt": near(base[1], 0.995),
        "m.txt": base[2] / np.linalg.norm(base[2]),
    }
    with Engine(tmp_path / "index", create=True) as eng:
        model = IndexConfig().model_key("text")
        with eng.catalog.transaction() as conn:
            for i, (name, vec) in enumerate(vectors.items()):
                path = str(tmp_path / name)
                eng.catalog.write_file(
                    conn,
                    NewFile(os.fsencode(path), path, "text", 10 + i, i, f"{i:064x}", "indexed"),
                    [Segment(space="text", kind="chunk", start=0.0, end=10.0, text=name)],
                    [vec],
                    {"text": model},
                )
        groups = find_duplicates(eng, threshold=0.95)
    near_groups = [[Path(f.path).name for f in g.files] for g in groups if g.kind == "near"]
    assert near_groups == [["z1.txt", "z2.txt"], ["a1.txt", "a2.txt"]]
