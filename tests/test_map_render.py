"""Writing a map to disk, without an index: hostile file names cannot break or script the
written page, and a target that cannot be written is a one-line error, not a traceback."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from searchengine.atlas.build import MapPoint, MapResult
from searchengine.atlas.render import write
from searchengine.errors import UserError

HOSTILE = [
    "/files/<!--<script>.txt",  # would swallow the page's own script (data never ends)
    "/files/</script><script>alert(1)</script>.txt",
    "/files/<img src=x onerror=alert(1)>.txt",
]


def small_map() -> MapResult:
    points = [MapPoint(i + 1, p, "text", 0.3 * i - 0.3, 0.1 * i, 0) for i, p in enumerate(HOSTILE)]
    return MapResult("text", "pca", points, labels={0: ["<b>bold</b>"]})


def test_hostile_names_stay_data_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    out = write(small_map(), tmp_path / "map.html")
    page_text = out.read_text()
    data = re.search(r'id="map-data">(.*?)</script>', page_text, re.S).group(1)
    assert [p["path"] for p in json.loads(data)["points"]] == HOSTILE
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: 'make sysdeps' (apt-get install chromium)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(out.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            assert page.locator("img").count() == 0 and dialogs == []
            assert "<b>bold</b>" in page.locator("#legend").inner_text()
        finally:
            browser.close()


def test_a_target_that_cannot_be_written_is_a_user_error(tmp_path):
    (tmp_path / "taken.html").mkdir()  # a folder where the page should go
    with pytest.raises(UserError, match="cannot write"):
        write(small_map(), tmp_path / "taken.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.html"]  # no .tmp left
