"""The HTTP API: every endpoint, and every bad input answered with a clear 4xx JSON line.

The library (tests/serve_fixtures.py) is indexed once with tiny random CLIP/CLAP models
(plumbing only) and the packaged MiniLM text model; text results are real."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from searchengine import Engine
from searchengine.errors import UserError
from searchengine.serve.app import create_app
from searchengine.serve.security import is_loopback, server_token
from searchengine.serve.server import Server, bind, run_server
from tests.conftest import REPO, run_cli
from tests.serve_fixtures import SCENE_S, served_library  # noqa: F401 - a fixture

LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def lib(served_library):  # noqa: F811 - the imported fixture
    return served_library


@pytest.fixture(scope="module")
def ids(lib) -> dict[str, int]:
    with Engine(lib["index"], readonly=True) as eng:
        return {os.path.basename(r.path): r.id for r in eng.catalog.all_files()}


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(lib, uploads):
    app = create_app(lib["index"], upload_dir=uploads)
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as c:
        yield c


def error_of(response: httpx.Response, status: int) -> str:
    """The one-line error of a refused request (JSON, no traceback)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert "Traceback" not in response.text and body["error"]
    return body["error"]


def jpeg_bytes(path: Path) -> bytes:
    return path.read_bytes()


# ---- search ---------------------------------------------------------------------------------


def test_search_answers_the_cli_hit_json_plus_ids(client, lib, ids):
    r = client.get("/api/search", params={"q": "pancakes batter", "k": 5})
    assert r.status_code == 200
    hits = r.json()["hits"]
    assert hits[0]["name"] == "recipe.html" and hits[0]["id"] == ids["recipe.html"]
    assert "Pancakes" in hits[0]["words"] and "keywords" in hits[0]["reason"]
    with Engine(lib["index"], readonly=True) as eng:
        cli = [h.to_json() for h in eng.search("pancakes batter", k=5)]
    shown = [{k: v for k, v in h.items() if k not in ("id", "name", "words")} for h in hits]
    assert shown == cli  # the same hits, fields and values as `search --json`
    assert r.json()["took_ms"] > 0


def test_search_filters_like_and_not(client, lib, ids):
    def names(**params) -> list[str]:
        r = client.get("/api/search", params=params)
        assert r.status_code == 200, r.text
        return [h["name"] for h in r.json()["hits"]]

    assert set(names(q="photo", type="image,video", k=10)) == {
        "wave.jpg",
        "canyon.jpg",
        "three-scenes.mp4",
    }
    assert names(q="pancakes", path="*/docs/*", k=3)[0] == "recipe.html"
    assert all(
        n.endswith((".txt", ".md", ".html", ".rst", ".log", ".py"))
        for n in names(q="pancakes", path="*/docs/*", k=20)
    )
    assert names(q="scenes", type="video", max_duration=2 * SCENE_S) == []
    assert names(q="scenes", type="video", min_duration=SCENE_S) == ["three-scenes.mp4"]
    assert names(q="pancakes", after="2999-01-01") == []
    assert names(q="pancakes", before="2999-01-01", k=1) == ["recipe.html"]
    assert names(q="garden compost", before="2020-01-01", all=True) == ["garden.md"]
    assert "garden.md" not in names(q="garden compost", after="2019-07-01", all=True)
    by_date = names(q="garden compost planet", k=4, type="text", sort="date")
    assert by_date[:2] == ["garden.md", "astronomy.rst"]  # oldest first
    assert names(q="garden compost planet", k=4, type="text", sort="-date")[-2:] == by_date[1::-1]
    assert len(names(q="garden", k=2)) == 2
    assert len(names(q="garden", all=True, k=3, diverse=False, min_score=0)) == 3
    assert names(q="the planet Jupiter", k=1, min_score=0.99) == []
    with Engine(lib["index"], readonly=True) as eng:  # like=ID is the CLI's --like FILE
        example = str(lib["root"] / "docs" / "astronomy.rst")
        expect = [os.path.basename(h.path) for h in eng.search("", like=example, k=3)]
    assert names(q="", like=ids["astronomy.rst"], k=3) == expect

    def top_score(**params) -> float:
        return client.get("/api/search", params=params).json()["hits"][0]["score"]

    read = client.get("/api/search", params={"q": "pancakes from last year"}).json()
    assert read["hits"] == [] and read["reading"]["text"] == "pancakes"  # a date was read
    assert set(read["reading"]["filters"]) == {"after", "before"}
    assert names(q="pancakes from last year", literal=True, k=1) == ["recipe.html"]

    plain = top_score(q="planet moons", k=1)
    assert top_score(q="planet moons", k=1, **{"not": "Jupiter, Galileo and astronomy"}) < plain


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"q": "x", "k": "abc"}, 422, "k:"),
        ({"q": "x", "k": 0}, 422, "k:"),
        ({"q": "x", "k": 100000}, 422, "k:"),
        ({"q": "x", "type": "movies"}, 400, "unknown type 'movies'"),
        ({"q": "x", "after": "yesterday"}, 400, "--after wants a date"),
        ({"q": "x", "before": "2024-13-45"}, 400, "--before wants a date"),
        ({"q": "x", "min_score": 2}, 422, "min_score"),
        ({"q": "x", "min_duration": -1}, 422, "min_duration"),
        ({"q": "x", "max_duration": "nan"}, 422, "max_duration"),
        ({"q": "x", "diverse": "maybe"}, 422, "diverse"),
        ({"q": "x", "min-score": 0.5}, 422, "min-score"),
        ({"q": "x", "sort": "sideways"}, 400, "--sort wants one of"),
        ({"q": "x", "literal": "perhaps"}, 422, "literal"),
        ({"q": "   "}, 400, "the query is empty"),
        ({}, 400, "the query is empty"),
        ({"q": "x", "like": 999999}, 404, "no file with id 999999"),
        ({"q": "x", "like": "../../etc/passwd"}, 422, "like"),
        ({"q": "x", "like": 99999999999999999999}, 422, "like"),
        ({"q": "x", "like": 2**63}, 422, "like"),
        ({"q": "x", "like": 0}, 422, "like"),
    ],
)
def test_malformed_search_gets_a_clear_4xx(client, params, status, says):
    assert says in error_of(client.get("/api/search", params=params), status)


# ---- similar, uploads ---------------------------------------------------------------------


def test_similar_to_an_indexed_file_and_bad_ids(client, ids):
    r = client.get(f"/api/similar/{ids['wave.jpg']}", params={"type": "image", "k": 5})
    assert r.status_code == 200
    assert {h["type"] for h in r.json()["hits"]} == {"image"}
    assert "wave.jpg" not in [h["name"] for h in r.json()["hits"]]  # the example left out
    r = client.get(f"/api/similar/{ids['wave.jpg']}", params={"include_self": True, "k": 1})
    assert [(h["name"], h["score"]) for h in r.json()["hits"]] == [("wave.jpg", 1.0)]
    assert "no file with id 424242" in error_of(client.get("/api/similar/424242"), 404)
    error_of(client.get("/api/similar/abc"), 422)
    huge = "99999999999999999999999"
    for url in (f"/api/files/{huge}", f"/api/files/{huge}/media", f"/api/files/{huge}/thumb"):
        assert "file_id" in error_of(client.get(url), 422)
    for url in (f"/api/similar/{huge}", f"/api/similar/{2**63}", "/api/files/-1"):
        assert "file_id" in error_of(client.get(url), 422)
    assert "no file with id" in error_of(client.get(f"/api/files/{2**63 - 1}"), 404)
    error_of(client.get("/api/similar/1", params={"q": "words"}), 422)  # not an option here


def test_upload_finds_the_video_moment_and_is_deleted(client, lib, uploads, tmp_path):
    with Engine(lib["index"], readonly=True) as eng:
        before = len(eng.catalog.all_files())
    photo = lib["scene2"]  # the second scene of the slideshow: SCENE_S to 2 * SCENE_S
    r = client.post(
        "/api/similar",
        params={"type": "video"},
        files={"file": ("scene.jpg", jpeg_bytes(photo), "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    hit = r.json()["hits"][0]
    assert hit["name"] == "three-scenes.mp4"
    frame = next(s for s in hit["segments"] if s["kind"] == "frame")
    assert SCENE_S - 0.3 <= frame["start"] and frame["end"] <= 2 * SCENE_S + 0.3
    wave = lib["root"] / "images" / "wave.jpg"
    r = client.post(
        "/api/search",
        params={"q": "a photo", "type": "image", "k": 2},
        files={"file": ("wave.jpg", wave.read_bytes())},
    )
    assert r.status_code == 200, r.text
    outside = tmp_path / "example.jpg"  # not in the index: embedded as the upload is
    shutil.copy(wave, outside)
    with Engine(lib["index"], readonly=True) as eng:
        expect = eng.search("a photo", like=outside, types=["image"], k=2)
    assert [h["path"] for h in r.json()["hits"]] == [h.path for h in expect]
    assert list(uploads.iterdir()) == []  # deleted after the query
    with Engine(lib["index"], readonly=True) as eng:  # and never indexed
        assert len(eng.catalog.all_files()) == before
        assert not any("scene.jpg" in r.path for r in eng.catalog.all_files())


def test_bad_uploads_are_refused(client, lib, uploads, ids):
    def post(data: bytes, name: str = "x.bin", url: str = "/api/similar", **params):
        return client.post(url, params=params, files={"file": (name, data)})

    assert "not a document, image" in error_of(post(b"PK\x03\x04" + bytes(4000), "a.zip"), 415)
    assert "not a document, image" in error_of(post(bytes(range(256)) * 20), 415)
    assert "empty" in error_of(post(b"", "empty.txt"), 400)
    photo = jpeg_bytes(lib["scene2"])
    assert "either like=ID" in error_of(
        post(photo, "p.jpg", "/api/search", q="x", like=ids["wave.jpg"]), 400
    )
    error_of(client.post("/api/similar"), 422)  # no file at all
    error_of(post(photo, "p.jpg", k=0), 422)
    broken = post(b"\xff\xd8\xff\xe0" + bytes(3000), "broken.jpg")
    assert "broken.jpg" in error_of(broken, 400)  # the upload's own name, not a temp path
    assert str(uploads) not in broken.text
    assert list(uploads.iterdir()) == []


def test_oversized_uploads_get_413_whether_sized_or_streamed(lib, tmp_path):
    app = create_app(lib["index"], max_upload=4096, upload_dir=tmp_path)
    big = b"hello world " * 1000  # 12 kB of text: readable, too large
    with TestClient(app, base_url=LOCAL) as c:
        r = c.post("/api/similar", files={"file": ("big.txt", big)})
        assert "too large" in error_of(r, 413)

        def chunks():  # no Content-Length: counted as it streams
            for _ in range(256):
                yield b"x" * 1024

        r = c.post(
            "/api/similar",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert "too large" in error_of(r, 413)
        assert "too large" in error_of(
            c.post("/api/similar", content=b"", headers={"content-length": "99999999"}), 413
        )
        r = c.post("/api/similar", files={"file": ("small.txt", b"Jupiter has moons")})
        assert r.status_code == 200
    assert list(tmp_path.iterdir()) == []


# ---- duplicates, status, models, schema ------------------------------------------------------


def test_duplicates_status_models_and_schema(client):
    groups = client.get("/api/duplicates", params={"exact_only": True}).json()
    names = [sorted(os.path.basename(f["path"]) for f in g["files"]) for g in groups]
    assert ["budget-copy.txt", "budget.txt"] in names
    error_of(client.get("/api/duplicates", params={"threshold": 2}), 422)
    error_of(client.get("/api/duplicates", params={"type": "x"}), 400)
    status = client.get("/api/status").json()
    assert status["types"]["text"]["indexed"] >= 7
    assert status["types"]["image"]["indexed"] == 2 and status["types"]["image"]["failed"] == 1
    assert [f["path"].endswith("broken.jpg") for f in status["failed"]] == [True]
    assert "truncated" in status["failed"][0]["reason"]
    assert status["types"]["audio"]["indexed"] == 1
    assert status["types"]["video"]["indexed"] == 1
    models = client.get("/api/models").json()
    assert {m["space"] for m in models} == {"text", "clip", "clap", "voice", "ocr"}
    assert all(m["available"] for m in models)
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/search",
        "/api/similar/{file_id}",
        "/api/similar",
        "/api/duplicates",
        "/api/status",
        "/api/models",
        "/api/files/{file_id}",
        "/api/files/{file_id}/media",
        "/api/files/{file_id}/thumb",
    ):
        assert path in paths
    assert set(paths["/api/search"]) == {"get", "post"}
    page = client.get("/")
    assert page.status_code == 200 and "<title>searchengine</title>" in page.text
    assert client.get("/static/app.js").status_code == 200


# ---- files ---------------------------------------------------------------------------------


def test_media_with_range_and_safe_types(client, lib, ids):
    vid = ids["three-scenes.mp4"]
    full = (lib["root"] / "video" / "three-scenes.mp4").read_bytes()
    r = client.get(f"/api/files/{vid}/media")
    assert r.status_code == 200 and r.content == full
    assert r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
    r = client.get(f"/api/files/{vid}/media", headers={"range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == full[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(full)}"
    r = client.get(f"/api/files/{vid}/media", headers={"range": f"bytes={len(full) + 10}-"})
    assert r.status_code == 416
    r = client.get(f"/api/files/{ids['alarm-clock.oga']}/media", headers={"range": "bytes=0-"})
    assert r.status_code == 206 and r.headers["content-type"] == "audio/ogg"
    r = client.get(f"/api/files/{ids['recipe.html']}/media")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"  # never run as a page
    assert "sandbox" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    info = client.get(f"/api/files/{vid}").json()
    assert info["name"] == "three-scenes.mp4" and info["type"] == "video"
    assert info["size"] == len(full)
    assert "no file with id 77777" in error_of(client.get("/api/files/77777/media"), 404)
    assert "is failed" in error_of(client.get(f"/api/files/{ids['broken.jpg']}/media"), 404)
    error_of(client.get("/api/files/-1"), 422)  # ids are 1..2**63-1


def test_thumbnails_show_the_frame_of_the_moment(client, ids):
    vid = ids["three-scenes.mp4"]

    def picture(file_id: int, **params) -> Image.Image:
        r = client.get(f"/api/files/{file_id}/thumb", params=params)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
        return Image.open(io.BytesIO(r.content)).convert("RGB")

    scenes = [picture(vid, at=SCENE_S * (i + 0.5), size=64) for i in range(3)]
    assert max(scenes[0].size) <= 64
    means = [sum(im.resize((1, 1)).getpixel((0, 0))) for im in scenes]
    assert len({round(m / 10) for m in means}) == 3  # three different scenes
    assert max(picture(ids["wave.jpg"], size=100).size) == 100
    error_of(client.get(f"/api/files/{vid}/thumb", params={"at": 999}), 400)
    error_of(client.get(f"/api/files/{vid}/thumb", params={"at": -1}), 422)
    error_of(client.get(f"/api/files/{vid}/thumb", params={"size": 5}), 422)
    assert "only images and videos" in error_of(
        client.get(f"/api/files/{ids['alarm-clock.oga']}/thumb"), 404
    )


@pytest.mark.parametrize(
    "url",
    [
        "/api/files/../../etc/passwd",
        "/api/files/..%2F..%2Fetc%2Fpasswd/media",
        "/api/files/%2e%2e/%2e%2e/etc/passwd/media",
        "/api/files/1%2F..%2F2/media",
        "/api/files/etc%2Fpasswd/media",
        "/static/../catalog.db",
        "/static/%2e%2e/%2e%2e/engine.py",
        "/static/..%2F..%2Fengine.py",
        "/api/files/1/media/../../../etc/passwd",
        "//etc/passwd",
    ],
)
def test_traversal_attempts_reach_nothing(client, url):
    r = client.get(url)
    assert r.status_code in (404, 422), (url, r.status_code)
    assert "root:" not in r.text and "import" not in r.text
    assert r.json()["error"]


def test_a_catalogued_file_swapped_for_a_symlink_is_refused(client, lib, ids, tmp_path):
    victim = lib["root"] / "docs" / "server.log"
    saved = tmp_path / "server.log"
    shutil.copy2(victim, saved)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET " * 10)
    url = f"/api/files/{ids['server.log']}/media"
    try:
        assert client.get(url).status_code == 200
        victim.unlink()
        victim.symlink_to(secret)
        r = client.get(url)
        assert "changed on disk" in error_of(r, 409) and "SECRET" not in r.text
        victim.unlink()
        assert "gone" in error_of(client.get(url), 404)
        victim.write_text("something else entirely")
        assert "changed on disk" in error_of(client.get(url), 409)
    finally:
        victim.unlink(missing_ok=True)
        shutil.copy2(saved, victim)  # same content and times: the catalogued file again
    assert client.get(url).status_code == 200


def test_a_symlink_repointed_to_a_file_of_the_same_size_and_time_is_refused(tmp_path):
    from searchengine.crawler import file_hash
    from searchengine.serve.media import NotServable, check_file
    from searchengine.store.catalog import FileRecord

    photo, secret = tmp_path / "photo.txt", tmp_path / "secret.txt"
    photo.write_text("holiday notes " * 10)
    secret.write_text("TOP SECRET!!" * 10 + "xxxxxxxxxxxxxxxxxxxx")
    st = photo.stat()
    assert secret.stat().st_size == st.st_size
    os.utime(secret, ns=(st.st_atime_ns, st.st_mtime_ns))
    link = tmp_path / "library" / "photo.txt"
    link.parent.mkdir()
    link.symlink_to(photo)
    rec = FileRecord(
        1,
        os.fsencode(link),
        str(link),
        "text",
        st.st_size,
        st.st_mtime_ns,
        file_hash(str(photo)),
        "indexed",
        None,
    )
    assert check_file(rec).path == str(photo)
    link.unlink()
    link.symlink_to(secret)  # same size, same mtime, another file
    with pytest.raises(NotServable, match="changed on disk") as refused:
        check_file(rec)
    assert refused.value.status == 409


# ---- read-only, errors, CORS, tokens ------------------------------------------------------


def test_the_index_is_read_only_from_http(client, lib, ids, tmp_path):
    assert client.app.state.library.engine.readonly
    for method in ("PUT", "DELETE", "PATCH"):
        assert client.request(method, f"/api/files/{ids['wave.jpg']}").status_code == 405
    assert client.post("/api/status").status_code == 405
    with Engine(lib["index"]) as writer, pytest.raises(ValueError):
        create_app(engine=writer)
    pool = create_app(lib["index"], parallel=3, upload_dir=tmp_path).state.library
    assert len(pool.engines) == 3 and all(e.readonly for e in pool.engines)
    pool.close()
    with pytest.raises(UserError, match="--parallel must be at least 1"):
        create_app(lib["index"], parallel=0)


def test_an_internal_failure_is_json_without_a_traceback(client, monkeypatch):
    library = client.app.state.library
    monkeypatch.setattr(library.engine, "status", lambda: 1 / 0)
    r = client.get("/api/status")
    assert "internal error (ZeroDivisionError)" in error_of(r, 500)


def test_cors_is_off_unless_asked(client, lib, tmp_path):
    origin = {"origin": "http://elsewhere.test"}
    assert "access-control-allow-origin" not in client.get("/api/status", headers=origin).headers
    app = create_app(lib["index"], cors=["http://elsewhere.test"], upload_dir=tmp_path)
    with TestClient(app, base_url=LOCAL) as c:
        r = c.get("/api/status", headers={**origin, "sec-fetch-site": "cross-site"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://elsewhere.test"
        r = c.get("/api/status", headers={"origin": "http://other.test"})
        assert "access-control-allow-origin" not in r.headers


def test_other_sites_pages_are_refused(client, ids):
    media = f"/api/files/{ids['wave.jpg']}/media"
    for headers in (
        {"origin": "http://evil.test"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:9999"},
        {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"},
    ):
        for url in ("/api/status", "/api/search?q=planet", media):
            r = client.get(url, headers=headers)
            assert "other sites" in error_of(r, 403), (url, headers)
            assert r.headers["cross-origin-resource-policy"] == "same-origin"
    r = client.post(
        "/api/similar", files={"file": ("a.txt", b"hello")}, headers={"origin": "http://evil.test"}
    )
    assert "other sites" in error_of(r, 403)
    own = {"origin": LOCAL, "sec-fetch-site": "same-origin"}
    r = client.get(media, headers=own)
    assert r.status_code == 200 and r.headers["cross-origin-resource-policy"] == "same-origin"
    link = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert client.get("/", headers=link).status_code == 200  # a link to the page opens it
    assert client.get("/api/status", headers=link).status_code == 403


def test_loopback_without_token_answers_only_loopback_hosts(client):
    assert client.get("/api/status", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/api/status", headers={"host": "[::1]:8765"}).status_code == 200
    r = client.get("/api/status", headers={"host": "rebound.example.com"})
    assert "localhost only" in error_of(r, 403)


def test_a_token_is_required_when_set(lib, tmp_path):
    app = create_app(lib["index"], token="s3cret-token", upload_dir=tmp_path)
    with TestClient(app, base_url="http://192.0.2.10:8765") as c:
        assert "token is required" in error_of(c.get("/api/status"), 401)
        assert "token is required" in error_of(c.get("/"), 401)
        assert "token is required" in error_of(c.get("/api/files/1/media"), 401)
        wrong = {"authorization": "Bearer nope"}
        assert "token is required" in error_of(c.get("/api/status", headers=wrong), 401)
        good = {"authorization": "Bearer s3cret-token"}
        assert c.get("/api/status", headers=good).status_code == 200
        assert c.get("/api/status", headers={"x-searchengine-token": "s3cret-token"}).is_success
        r = c.get("/api/search?q=planet&token=s3cret-token")  # the token is no search option
        assert r.status_code == 200 and r.json()["hits"]
        r = c.get("/?q=planet&token=s3cret-token", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/?q=planet"
        assert "HttpOnly" in r.headers["set-cookie"]
        c.cookies.set("searchengine_token", "s3cret-token")
        assert c.get("/").status_code == 200 and c.get("/api/status").status_code == 200


def test_binding_beyond_loopback_makes_and_prints_a_token(lib):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert server_token("127.0.0.1", None) == (None, False)
    assert server_token("127.0.0.1", "given") == ("given", False)
    made, generated = server_token("0.0.0.0", None)
    assert generated and len(made) >= 24
    lines: list[str] = []
    stop = threading.Event()
    args = (lib["index"], "0.0.0.0", 0)
    kw = {"say": lines.append, "stop": stop}
    thread = threading.Thread(target=run_server, args=args, kwargs=kw, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines[0].startswith("serving "), lines
        url = lines[1].split()[1]  # open http://0.0.0.0:PORT/?token=...
        assert "shown this once" in lines[1] and len(lines) == 2
        port = int(url.split(":")[2].split("/")[0])
        token = url.split("token=")[1]
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/status", timeout=30).status_code == 401
        bearer = {"authorization": f"Bearer {token}"}
        r = httpx.get(f"{base}/api/status", headers=bearer, timeout=30)
        assert r.status_code == 200 and r.json()["files"] >= 12
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()


def test_serve_command_errors_are_one_line(lib, tmp_path):
    taken = bind("127.0.0.1", 0)
    # asyncio sets TCP_NODELAY only on sockets made as TCP: without, each keep-alive
    # answer waited ~40 ms for the client's delayed ACK
    assert taken.proto == socket.IPPROTO_TCP
    try:
        with pytest.raises(UserError, match="is in use: pick another with --port"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    r = run_cli("serve", "--index", str(tmp_path / "none"), "--port", "0")
    assert r.returncode == 2 and "no index at" in r.stderr and "Traceback" not in r.stderr
    for bad, says in (
        (["--port", "99999"], "--port must be 0 to 65535"),
        (["--port", "-1"], "--port must be 0 to 65535"),
        (["--max-upload-mb", "nan"], "--max-upload-mb must be a number above 0"),
        (["--max-upload-mb", "inf"], "--max-upload-mb must be a number above 0"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be a number above 0"),
    ):
        r = run_cli("serve", "--index", str(lib["index"]), *bad, timeout=60)
        assert r.returncode == 2 and says in r.stderr, (bad, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_a_signal_and_deletes_its_upload_folder(lib, tmp_path, sig):
    temp = tmp_path / "tmp"  # the upload folder is made by tempfile.mkdtemp, under $TMPDIR
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    cmd = [sys.executable, "-m", "searchengine.cli", "serve", "--index", str(lib["index"])]
    proc = subprocess.Popen(
        [*cmd, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        line = proc.stdout.readline()
        found = re.search(r"http://\S+/", line)
        assert found, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert httpx.get(f"{found.group(0)}api/status", timeout=30).status_code == 200
        assert len(list(temp.glob("searchengine-uploads-*"))) == 1
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in proc.stderr.read()
    assert list(temp.glob("searchengine-uploads-*")) == []


# ---- a real server: many clients, and another process's `index` -------------------------


@pytest.fixture(scope="module")
def live(lib, uploads):
    app = create_app(lib["index"], upload_dir=uploads, parallel=2)  # two engines answer
    server = Server(app, bind("127.0.0.1", 0)).start()
    yield server.url.rstrip("/")
    server.stop()


def test_many_clients_at_once(live):
    queries = {"pancakes": "recipe.html", "jupiter moons": "astronomy.rst", "fibonacci": "code.py"}
    answers: list[tuple[int, str, str]] = []

    def client() -> None:
        with httpx.Client(base_url=live, timeout=60) as c:
            for q in queries:
                r = c.get("/api/search", params={"q": q, "k": 3})
                answers.append((r.status_code, q, r.json()["hits"][0]["name"]))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 48
    assert all(code == 200 and queries[q] == name for code, q, name in answers)


def test_an_index_run_by_another_process_shows_without_restart(live, lib, tmp_path):
    def top(q: str) -> list[str]:
        r = httpx.get(f"{live}/api/search", params={"q": q, "k": 3, "type": "text"})
        return [h["name"] for h in r.json()["hits"]]

    files_before = httpx.get(f"{live}/api/status").json()["files"]
    assert "penguins.txt" not in top("penguins huddle on the antarctic ice")
    new = lib["root"].parent / "later"
    new.mkdir(exist_ok=True)
    (new / "penguins.txt").write_text(
        "Emperor penguins huddle together on the Antarctic ice through the winter storms."
    )
    started = time.monotonic()
    r = run_cli("index", str(new), "--index", str(lib["index"]))
    assert r.returncode == 0, r.stderr
    assert top("penguins huddle on the antarctic ice")[0] == "penguins.txt"
    assert httpx.get(f"{live}/api/status").json()["files"] == files_before + 1
    assert time.monotonic() - started < 120
