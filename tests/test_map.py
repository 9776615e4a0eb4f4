"""`searchengine map` end to end on a small mixed library (real photos, two documents, a
sound; tiny random CLIP/CLAP: plumbing only, the packaged MiniLM for text): a real UMAP
layout of the photos that a later run extends, the edge cases (two files, one file, an
empty space, bad choices), and both pages in Chromium. The first UMAP fit in a process
compiles numba code (~20 s here): it happens once, in the first test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from searchengine import Engine
from searchengine.atlas import labels
from searchengine.errors import UserError
from searchengine.indexer import Indexer
from tests.conftest import TOPICS, run_cli, write_corpus
from tests.serve_fixtures import SOUND, tiny_models

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def library(sample_dir, test_models, tmp_path_factory) -> dict:
    """20 real photos, two documents and a sound, indexed with the tiny CLIP/CLAP and the
    packaged MiniLM; three more photos are kept back for a later run."""
    base = tmp_path_factory.mktemp("map-library")
    found = sorted((sample_dir / "images" / "scratch" / "Backgrounds").rglob("*.jpg"))[:23]
    assert len(found) == 23
    lib = base / "lib"
    (lib / "photos").mkdir(parents=True)
    for path in found[:20]:
        shutil.copy(path, lib / "photos" / path.name)
    write_corpus(lib / "docs", {k: TOPICS[k] for k in ("garden.md", "astronomy.rst")})
    (lib / "sounds").mkdir()
    sound = sample_dir / "sounds" / SOUND
    shutil.copy(sound if sound.exists() else next((sample_dir / "sounds").rglob("*.oga")),
                lib / "sounds" / "alarm.oga")  # fmt: skip
    chosen = tiny_models(test_models)
    chosen["models"].update(ocr="off", voice="off")  # not what this file tests; slow
    with pytest.MonkeyPatch.context() as mp:  # a map never encodes a query: no ONNX export
        mp.setattr(Indexer, "_export_query_encoders", lambda self: None)
        with Engine(base / "index", create=True, **chosen) as eng:
            assert eng.index([lib]).added == 23
    return {"lib": lib, "index": base / "index", "later": found[20:]}


def test_api_lays_out_photos_with_umap_and_labels_clusters(library):
    with Engine(library["index"]) as eng:
        first = eng.map("clip")
        assert (first.method, first.fitted, len(first.points)) == ("umap", 20, 20)
        xy = np.array([(p.x, p.y) for p in first.points])
        assert np.abs(xy).max() <= 1.0 + 1e-6 and xy.std(axis=0).min() > 0.05  # spread out
        assert any(p.cluster != labels.OTHER for p in first.points)
        names = " ".join(p.path.lower() for p in first.points)
        for cid, words in first.labels.items():
            assert words and all(w in names for w in words), (cid, words)  # from the names
        again = eng.map("clip")
        assert (again.fitted, again.placed) == (0, 0)  # stored: nothing to do
        assert [(p.x, p.y) for p in again.points] == [(p.x, p.y) for p in first.points]
        # the type filter picks the space, --path narrows what is shown
        only = eng.map(types=["image"], path_glob=str(library["lib"] / "photos" / "[ab]*"))
        assert only.space == "clip"
        assert 0 < len(only.points) < 20
        assert all(Path(p.path).name[0] in "ab" for p in only.points)


def test_cli_writes_html_and_png(library, tmp_path):
    page, png = tmp_path / "map.html", tmp_path / "map.png"
    res = run_cli(
        "map", "--index", str(library["index"]), "--space", "clip",
        "-o", str(page), "-o", str(png), "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert len(data["points"]) == 20 and {p["type"] for p in data["points"]} == {"image"}
    html = page.read_text()
    assert "<script src" not in html and "<link" not in html  # offline: nothing fetched
    assert html.count("data:image/jpeg;base64,") == 20  # a picture per photo
    with Image.open(png) as im:
        assert im.size == (1600, 1600)
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    assert len(colours) > 10  # dots and label text drawn, not a blank canvas


def test_few_points_one_point_empty_space_and_bad_choices(library, tmp_path):
    with Engine(library["index"]) as eng:
        docs = eng.map("text", types=["text"])  # the real text model; few files: PCA
        assert docs.method == "pca" and len(docs.points) == 2
        assert docs.points[0].x != docs.points[1].x
        one = eng.map("clap")
        assert [(p.type, p.x, p.y) for p in one.points] == [("audio", 0.0, 0.0)]
        assert one.method == "point"
        with pytest.raises(UserError, match="--space wants one of"):
            eng.map("faces")
        with pytest.raises(UserError, match="passes these filters"):
            eng.map("text", path_glob="/nowhere/*")
    empty = tmp_path / "index"
    shutil.copytree(library["index"], empty)
    with Engine(empty) as eng:
        eng.remove([library["lib"] / "docs"])
        with pytest.raises(UserError, match="the text space is empty"):
            eng.map("text")
    res = run_cli("map", "--index", str(empty), "--space", "text", "-o", str(tmp_path / "m.html"))
    assert res.returncode != 0
    assert "the text space is empty" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("map", "--index", str(empty), "-o", str(tmp_path / "m.svg"))
    assert res.returncode != 0 and "-o wants a .html or .png" in res.stderr


def test_next_run_places_only_new_files(library, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(library["index"], index)
    photos = library["lib"] / "photos"
    with Engine(index) as eng:
        before = {p.id: (p.x, p.y) for p in eng.map("clip").points}
        added = []
        for path in library["later"]:
            added.append(photos / path.name)
            shutil.copy(path, added[-1])
        gone = photos / sorted(p.name for p in photos.iterdir())[0]
        kept_copy = shutil.copy2(gone, tmp_path / gone.name)
        gone.unlink()
        try:
            eng.index([library["lib"]])
        finally:  # the module's library stays as it was
            for path in added:
                path.unlink()
            shutil.copy2(kept_copy, gone)
        second = eng.map("clip")
        assert (second.fitted, second.placed) == (0, 3)
        after = {p.id: (p.x, p.y) for p in second.points}
        kept = set(before) & set(after)
        assert len(kept) == 19 and all(after[i] == before[i] for i in kept)  # none moved
        assert len(after) == 22 and str(gone) not in {p.path for p in second.points}
        refit = eng.map("clip", refit=True)
        assert (refit.fitted, len(refit.points)) == (22, 22)
        assert len(list((index / "maps").glob("clip-*.pkl"))) == 1  # the old reducer is gone
        with eng.catalog.transaction() as conn:  # as if the layout came from another model
            conn.execute(text("UPDATE map_fits SET model = 'an older model'"))
        assert eng.map("clip").fitted == 22
    with Engine(index, readonly=True) as reader:  # the server's view: the stored layout
        shown = reader.map("clip")
        assert {p.id for p in shown.points} == {p.id for p in refit.points}
        assert shown.unplaced == 0


# ---- in Chromium ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: 'make sysdeps' (apt-get install chromium)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


def _on_page(page, points: list[dict]) -> list[dict]:
    """Canvas positions of `window.mapPoints()` as page positions (for the mouse)."""
    box = page.locator("#map").bounding_box()
    return [dict(p, x=p["x"] + box["x"], y=p["y"] + box["y"]) for p in points]


def _visible_pixels(page) -> int:
    return page.evaluate(
        """() => {
          const c = document.getElementById('map');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
          return n;
        }"""
    )


def test_layout_of_two_and_of_sixteen_vectors():
    from searchengine.atlas.layout import fit

    rng = np.random.default_rng(1)
    two, xy = fit(rng.normal(size=(2, 8)).astype(np.float32))
    assert two.method == "pca" and xy.shape == (2, 2) and xy[0, 0] == -xy[1, 0] != 0
    assert np.allclose(two.transform(rng.normal(size=(3, 8)).astype(np.float32))[:, 1], 0)
    with pytest.raises(ValueError, match="size 4"):
        two.transform(np.zeros((1, 4), np.float32))


def test_written_map_opens_offline_in_chromium(library, browser, tmp_path):
    out = tmp_path / "map.html"
    with Engine(library["index"]) as eng:
        from searchengine.atlas.render import write

        write(eng.map("clip"), out)
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    fetched: list[str] = []
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(("file:", "data:"))
            else (fetched.append(route.request.url), route.abort())
        ),
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    points = _on_page(page, page.evaluate("window.mapPoints()"))
    assert len(points) == 20
    image = next(p for p in points if p["type"] == "image")
    page.mouse.move(image["x"], image["y"])
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    assert tip.locator("img").get_attribute("src").startswith("data:image/jpeg")
    page.screenshot(path=str(ARTIFACTS / "map-file.png"))
    assert fetched == [] and errors == []
    context.close()


def test_map_page_of_the_web_app(library, browser, tmp_path):
    from searchengine.serve.app import create_app
    from searchengine.serve.server import Server, bind

    with Engine(library["index"]) as eng:
        eng.map("clip")  # the layout the page shows is the stored one
    srv = Server(create_app(library["index"], upload_dir=tmp_path / "up"), bind("127.0.0.1", 0))
    srv.start()
    try:
        context = browser.new_context(
            base_url=srv.url.rstrip("/"), viewport={"width": 1000, "height": 760}
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/map?space=clip")
        page.wait_for_selector("body[data-ready='1']")
        assert "20 files" in page.locator("#info").inner_text()
        points = _on_page(page, page.evaluate("window.mapPoints()"))
        image = next(p for p in points if p["type"] == "image")
        page.mouse.move(image["x"], image["y"])
        img = page.locator("#tip img")
        img.wait_for(state="visible")
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")  # the server's thumbnail
        page.screenshot(path=str(ARTIFACTS / "map-served.png"))
        with context.expect_page() as opened:
            page.mouse.click(image["x"], image["y"])
        assert opened.value.url.endswith(f"/api/files/{image['id']}/media")
        # a cluster's box hides its points, and shows them again
        drawn = _visible_pixels(page)
        box = page.locator("#legend input").first
        cluster = int(box.get_attribute("data-cluster"))
        box.uncheck()
        shown = page.evaluate("window.mapPoints()")
        assert shown and all(p["cluster"] != cluster for p in shown) and len(shown) < 20
        assert _visible_pixels(page) < drawn
        box.check()
        assert page.evaluate("window.mapPoints().length") == 20
        assert errors == []
        context.close()
    finally:
        srv.stop()
