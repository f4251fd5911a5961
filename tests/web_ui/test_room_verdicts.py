"""Verdicts where users meet them, on real room photos (samples/rooms: 12 rooms, 2 photos each, an
instance-level collection) served by `whysim serve` and read in headless Chromium: among the top-10
hits of a room photo, only its own room's other photo is called similar, each hit shows one match
figure whose bar follows it, and the explanation dialog says it in plain words. Screenshots of the
results and of the dialog go to test-artifacts/ (rooms-results.png, rooms-explanation.png)."""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT
from playwright.sync_api import Page, expect

from web_ui.conftest import LiveServer, serving
from whysim.indexer.datadir import DataDir
from whysim.webui.cli import cli

ROOMS = REPO_ROOT / "samples" / "rooms"
QUERY_ROOM = "bathroom__berlin_1583556"
EXPLANATION_LOADED = """() => {
    const overlays = Array.from(document.querySelectorAll('#explain-dialog .map-overlay'));
    return overlays.length === 4 && overlays.every(image => image.complete && image.naturalWidth > 0)
        && document.querySelectorAll('#explain-dialog .map-figure.is-loading').length === 0;
}"""


@pytest.fixture(scope="module")
def room_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    datadir = DataDir(tmp_path_factory.mktemp("rooms-index") / "data")
    result = CliRunner().invoke(cli, ["index", str(ROOMS), "--data-dir", str(datadir.root), "--workers", "0",
                                      "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with serving(datadir, tmp_path_factory.mktemp("rooms-logs") / "serve.log") as live:
        yield live


def image_id(server: LiveServer, path: str) -> int:
    return next(image["id"] for image in server.api("api/images?limit=100")["images"] if image["path"] == path)


def test_room_photos_top_hits_call_only_the_same_room_similar(room_server: LiveServer, page: Page,
                                                              artifacts: Path) -> None:
    assert room_server.api("api/search", {"image_id": 1, "k": 1})["verdict_rule"]["collection"] == "instance-level"
    query = image_id(room_server, f"{QUERY_ROOM}/berlin_1583556_1.jpg")
    found = room_server.api("api/search", {"image_id": query, "k": 10})["hits"]
    verdicts = {hit["path"].split("/")[0]: hit["verdict"] for hit in found if hit["verdict"] == "similar"}
    assert verdicts == {QUERY_ROOM: "similar"}, [(hit["path"], hit["match"]) for hit in found]

    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{room_server.url}?id={query}&k=10")
    expect(page.locator("#hits .hit:not(.skeleton)")).to_have_count(10)
    for hit in found:
        card = page.locator(f".hit[data-id='{hit['id']}']")
        percent = math.floor(100 * hit["match"])
        expect(card.locator(".score-value")).to_have_text(f"{percent}% match")
        expect(card.locator(".hit-verdict")).to_have_text("similar" if hit["verdict"] == "similar" else "not similar")
        width = float(card.locator(".score-fill").evaluate("bar => bar.style.width").rstrip("%"))
        assert width == pytest.approx(100 * hit["match"], abs=0.051)
    page.screenshot(path=artifacts / "rooms-results.png", full_page=True)

    # The explanation of a look-alike from another room: plain words, one figure, the shares of
    # what argues for and against the match in 0-100 %.
    other = next(hit for hit in found if hit["verdict"] == "dissimilar")
    page.locator(f".hit[data-id='{other['id']}']").get_by_role("button", name="Explain").click()
    page.wait_for_function(EXPLANATION_LOADED)
    expect(page.locator("#verdict-badge")).to_have_text("not similar")
    expect(page.locator("#verdict-score")).to_have_text(f"{math.floor(100 * other['match'])}% match")
    sentence = page.locator("#verdict-text").inner_text()
    assert sentence.startswith("whysim calls these two images not similar") and "look most like the query" in sentence
    assert not re.search(r"(cut|threshold)\D{0,12}\d|`|normalised|factual", sentence), sentence
    for group in ("#match-for", "#match-against"):
        shares = page.locator(f"{group} li").all_inner_texts()
        assert all(re.fullmatch(r"\d+: \d{1,3}%", text) for text in shares), shares
        assert not shares or abs(sum(int(text.split(": ")[1].rstrip("%")) for text in shares) - 100) <= len(shares)
    page.screenshot(path=artifacts / "rooms-explanation.png")
