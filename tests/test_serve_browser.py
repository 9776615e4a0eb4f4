"""The web page in a real browser: Debian's chromium, driven by Playwright through
`executable_path` (no browser download; `make sysdeps` installs it). One server and one
browser for the module; screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from searchengine.serve.app import create_app
from searchengine.serve.server import Server, bind
from tests.conftest import REPO
from tests.serve_fixtures import SCENE_S, served_library  # noqa: F401 - a fixture

ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def lib(served_library):  # noqa: F811 - the imported fixture
    return served_library


@pytest.fixture(scope="module")
def server(lib, tmp_path_factory):
    app = create_app(lib["index"], upload_dir=tmp_path_factory.mktemp("page-uploads"))
    srv = Server(app, bind("127.0.0.1", 0)).start()
    yield srv.url.rstrip("/")
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: 'make sysdeps' (apt-get install chromium)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium, args=["--autoplay-policy=no-user-gesture-required"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: str):
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(20000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == []  # no script error on the page


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"serve-{name}.png"), full_page=True)


def drop_file(page: Page, path: Path, name: str) -> None:
    """What dropping a file from a file manager does: drag events carrying a File."""
    data = base64.b64encode(path.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([data, name]) => {
            const raw = atob(data), bytes = new Uint8Array(raw.length);
            for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
            return dt;
        }""",
        [data, name],
    )
    page.dispatch_event("main", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop")).to_be_visible()
    page.dispatch_event("main", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop")).to_be_hidden()


def test_typing_a_query_shows_hits_with_score_reason_and_highlights(page: Page):
    page.goto("/")
    page.keyboard.press("/")  # the keyboard way to the search box
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("pancakes batter")
    page.keyboard.press("Enter")
    first = page.locator(".hit").first
    expect(first.locator(".name")).to_have_text("recipe.html")
    expect(first.locator("mark").first).to_have_text(re.compile("pancakes|batter", re.I))
    expect(first.locator(".score")).to_have_text(re.compile(r"^[01]\.\d\d$"))
    expect(first.locator(".why")).to_contain_text("keywords")
    assert "q=pancakes+batter" in page.url
    expect(page.locator("#message")).to_contain_text("for “pancakes batter”")
    shot(page, "query")


def test_the_address_holds_the_query_and_the_type_chips(page: Page):
    page.goto("/?q=garden+compost&type=text&k=2")
    expect(page.locator("#q")).to_have_value("garden compost")
    expect(page.locator(".hit")).to_have_count(2)
    expect(page.locator(".hit").first.locator(".name")).to_have_text("garden.md")
    expect(page.locator(".chip[data-type=text]")).to_have_attribute("aria-pressed", "true")
    page.locator(".chip[data-type=image]").click()
    expect(page).to_have_url(re.compile(r"type=text%2Cimage"))
    page.locator(".chip[data-type=text]").click()
    expect(page).to_have_url(re.compile(r"type=image(&|$)"))
    expect(page.locator(".hit-image")).to_have_count(2)
    expect(page.locator(".hit-text")).to_have_count(0)
    page.go_back()
    expect(page.locator(".chip[data-type=text]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".chip[data-type=image]")).to_have_attribute("aria-pressed", "true")
    page.go_back()
    expect(page.locator(".chip[data-type=image]")).to_have_attribute("aria-pressed", "false")
    expect(page.locator(".hit-image")).to_have_count(0)
    expect(page.locator(".hit")).to_have_count(2)


def test_dropping_a_photo_finds_the_video_and_plays_from_its_moment(page: Page, lib):
    page.goto("/?type=video")
    drop_file(page, lib["scene2"], "second-scene.jpg")
    card = page.locator(".hit-video").first
    expect(card.locator(".name")).to_have_text("three-scenes.mp4")
    expect(page.locator("#message")).to_contain_text("like second-scene.jpg")
    start = float(card.locator(".moment").first.get_attribute("data-start"))
    assert SCENE_S - 0.3 <= start <= 2 * SCENE_S  # the dropped photo's scene
    expect(card.locator(".visual img")).to_have_attribute("src", re.compile(f"at={start:g}"))
    shot(page, "drop")
    card.locator(".visual").click()
    video = card.locator("video")
    video.evaluate(
        "v => new Promise(r => v.currentTime > 0.2 ? r() : v.addEventListener('timeupdate', r))"
    )
    page.wait_for_function(
        "v => !v.paused && v.played.length && v.currentTime > v.played.start(0) + 0.2",
        arg=video.element_handle(),
    )
    began = video.evaluate("v => v.played.start(0)")
    assert abs(began - start) < 0.5, (began, start)  # playing began at the moment
    shot(page, "video-playing")


def test_more_like_this_from_the_keyboard(page: Page):
    page.goto("/?q=jupiter+moons&type=text")
    card = page.locator(".hit").first
    expect(card.locator(".name")).to_have_text("astronomy.rst")
    card.locator("button.more").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"similar=\d+"))
    expect(page.locator("#message")).to_contain_text("like astronomy.rst")
    expect(page.locator(".hit").first).to_be_visible()
    shown = page.locator(".hit").count()
    assert shown and page.locator(".hit-text").count() == shown  # the type filter stays
    expect(page.locator("#q")).to_have_value("")
    shot(page, "more-like-this")
    page.go_back()
    expect(page.locator("#q")).to_have_value("jupiter moons")
    expect(page.locator(".hit").first.locator(".name")).to_have_text("astronomy.rst")


def test_a_sound_plays_from_its_window(page: Page):
    page.goto("/?q=an+alarm+clock+ringing&type=audio")
    card = page.locator(".hit-audio").first
    expect(card.locator(".name")).to_have_text("alarm-clock.oga")
    moment = card.locator(".moment").first
    start = float(moment.get_attribute("data-start"))
    moment.click()
    audio = card.locator("audio").element_handle()
    page.wait_for_function(
        "a => a.played.length && a.currentTime > a.played.start(0) + 0.2", arg=audio
    )
    assert abs(audio.evaluate("a => a.played.start(0)") - start) < 0.5


def test_status_view_and_errors(page: Page):
    page.goto("/")
    page.locator("#show-status").click()
    expect(page).to_have_url(re.compile(r"view=status"))
    status = page.locator("#status")
    expect(status.locator("table").first).to_contain_text("indexed")
    expect(status).to_contain_text("Failed (1)")
    expect(status).to_contain_text("truncated")
    expect(status).to_contain_text("broken.jpg")
    # text, clip, clap and voice weights found, and the OCR engine
    expect(status.locator("td.ok")).to_have_count(5)
    shot(page, "status")
    page.goto("/?q=planet&after=someday")
    expect(page.locator("#message.error")).to_contain_text("--after wants a date")


def test_a_passage_shows_its_page_or_box(page: Page):
    """Where the API gives a passage's place (a PDF page, the box of text read by OCR), the
    card shows it before the passage. The served library has no scans: the real answer
    is given a page and a box on its way to the page."""

    def placed(route):
        answer = route.fetch().json()
        hits = answer["hits"]
        hits[0]["segments"][0]["page"] = 3
        hits[1]["segments"][0]["box"] = [28, 64, 531, 30]
        route.fulfill(json=answer)

    page.route(re.compile(r".*/api/search\?.*"), placed)
    page.goto("/?q=garden+compost&type=text&k=2")
    cards = page.locator(".hit")
    expect(cards).to_have_count(2)
    expect(cards.nth(0).locator(".snippet .where").first).to_have_text("p. 3")
    expect(cards.nth(1).locator(".snippet .where").first).to_have_text("box 28,64 531×30")
    shot(page, "places")
