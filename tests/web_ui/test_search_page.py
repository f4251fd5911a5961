"""The search page in headless Chromium against a live `whysim serve`: upload, drop and paste a
query, ranked results, explanations with four loaded overlays, "more like this", the collection
gallery, paging, error and empty states, and a phone-sized viewport. Screenshots go to
test-artifacts/."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from web_ui.conftest import COLLECTION_SIZE, DESKTOP, PHONE, LiveServer, open_page, photo_jpeg, serving
from whysim.indexer.datadir import DataDir
from whysim.search.explain.overlays import EMPTY_MAP_PEAK

OVERLAY_ALTS = ["hit, counterfactual overlay", "hit, factual overlay",
                "query, counterfactual overlay", "query, factual overlay"]
ALL_THUMBNAILS_LOADED = """() => Array.from(document.querySelectorAll('#hits .thumb img'))
    .every(image => image.complete && image.naturalWidth > 0)"""
EXPLANATION_LOADED = """() => {
    const overlays = Array.from(document.querySelectorAll('#explain-dialog .map-overlay'));
    return overlays.length === 4 && overlays.every(image => image.complete && image.naturalWidth > 0)
        && document.querySelectorAll('#explain-dialog .map-figure.is-loading').length === 0;
}"""
READ_HITS = """cards => cards.map(card => {
    const image = card.querySelector('.thumb img');
    return {id: Number(card.dataset.id), rank: Number(card.dataset.rank),
            score: card.querySelector('.score-value').textContent,
            details: card.querySelector('.score-row').title,
            bar: card.querySelector('.score-fill').style.width,
            name: card.querySelector('.hit-name').textContent, label: card.querySelector('.chip').textContent,
            alt: image.alt};
})"""
DISPATCH_FILE = """([bytes, name, how]) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/jpeg'}));
    const event = how === 'drop'
        ? new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true})
        : new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true, cancelable: true});
    (how === 'drop' ? document.getElementById('dropzone') : document).dispatchEvent(event);
}"""


def open_search(page: Page, server: LiveServer, path: str = "") -> None:
    page.goto(server.url + path)
    expect(page.locator("#status")).to_have_attribute("data-state", "ready")


def choose_file(page: Page, data: bytes, name: str = "query.jpg") -> None:
    page.set_input_files("#file-input", files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])


def shown_hits(page: Page, count: int) -> list[dict[str, Any]]:
    expect(page.locator("#hits .hit:not(.skeleton)")).to_have_count(count)
    return page.eval_on_selector_all("#hits .hit", READ_HITS)


def ids(hits: list[dict[str, Any]]) -> list[int]:
    return [hit["id"] for hit in hits]


def file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def scroll_through(page: Page) -> None:
    """Scrolls to the bottom so lazily loaded thumbnails load, waits for them, and back up."""
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    page.evaluate("window.scrollTo(0, 0)")


def open_explanation(page: Page, card: int = 0) -> None:
    page.locator("#hits .hit").nth(card).get_by_role("button", name="Explain").click()
    expect(page.locator("#explain-dialog")).to_be_visible()
    page.wait_for_function(EXPLANATION_LOADED)


def test_an_upload_shows_k_ranked_results(page: Page, server: LiveServer, artifacts: Path) -> None:
    thumbnails = []
    page.on("response", lambda response: "/thumbnail" in response.url and thumbnails.append(response))
    open_search(page, server)
    stats = server.api("api/stats")
    status = page.locator("#status").inner_text()
    assert status == f"{COLLECTION_SIZE} images · general-purpose photo model · exact search"
    details = page.locator("#status").get_attribute("title") or ""  # the jargon, on hover
    assert f"model {stats['model']}" in details and f"{stats['index_type']} index" in details

    page.select_option("#k-select", "5")
    query = photo_jpeg(1001)
    choose_file(page, query)
    hits = shown_hits(page, 5)
    expected = server.upload(query, 5)
    assert ids(hits) == ids(expected["hits"]) and [hit["rank"] for hit in hits] == [1, 2, 3, 4, 5]
    for shown, hit in zip(hits, expected["hits"]):
        # One figure that reads the same on every collection, the bar following it; the cosine in the details.
        assert shown["score"] == f"{math.floor(100 * hit['match'])}% match"
        assert float(shown["bar"].rstrip("%")) == pytest.approx(hit["match"] * 100, abs=0.051)
        assert f"cosine similarity {hit['score']:.3f}" in shown["details"] and "50% and up: similar" in shown["details"]
        assert shown["name"] == file_name(hit["path"]) and shown["label"] == hit["label"]
        assert shown["alt"] == f"Result {hit['rank']}: {file_name(hit['path'])} ({hit['label']})"
    scores = [hit["score"] for hit in expected["hits"]]
    assert scores == sorted(scores, reverse=True)

    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    assert len(thumbnails) == 5 and all(response.status == 200 for response in thumbnails)
    assert all("immutable" in response.headers["cache-control"] for response in thumbnails)
    expect(page.locator("#results-heading")).to_have_text("Most similar to your image")
    expect(page.locator("#query-meta")).to_have_text("query.jpg · 96 × 72 px · uploaded")
    expect(page.locator("#results-count")).to_have_text("5 results, best first")
    digest = expected["query"]["key"]
    query_image = page.locator("#query-image")
    expect(query_image).to_have_attribute("src", f"/api/queries/{digest}/image")
    page.wait_for_function("() => document.getElementById('query-image').naturalWidth > 0")
    assert f"q={digest}" in page.url and "k=5" in page.url
    assert page.eval_on_selector_all("img", "images => images.filter(image => !image.alt).map(i => i.outerHTML)") == []
    page.screenshot(path=artifacts / "results.png", full_page=True)


def test_dropping_or_pasting_an_image_searches_with_it(page: Page, server: LiveServer) -> None:
    open_search(page, server)
    page.select_option("#k-select", "5")
    for seed, name, how in ((1002, "dropped.jpg", "drop"), (1003, "pasted.jpg", "paste")):
        query = photo_jpeg(seed)
        page.evaluate(DISPATCH_FILE, [list(query), name, how])
        expect(page.locator("#query-meta")).to_contain_text(name)
        assert ids(shown_hits(page, 5)) == ids(server.upload(query, 5)["hits"]), how


FIGURES = [(side, kind) for side in ("query", "hit") for kind in ("factual", "counterfactual")]
EMPTY_WORDS = {"factual": "supports the verdict.", "counterfactual": "argues against the verdict."}


def test_explain_shows_factual_and_counterfactual_maps_of_query_and_hit(page: Page, server: LiveServer,
                                                                        artifacts: Path) -> None:
    open_search(page, server)
    page.select_option("#k-select", "5")
    query = photo_jpeg(1004)
    choose_file(page, query)
    hits = shown_hits(page, 5)
    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    held = []
    page.route("**/api/explain?*", lambda route: held.append(route))  # holds the real request back, to see the loading state
    page.locator("#hits .hit").first.get_by_role("button", name="Explain").click()
    expect(page.locator("#explain-dialog")).to_be_visible()
    expect(page.locator("#verdict-badge")).to_have_text("computing…")
    expect(page.locator("#explain-dialog .map-figure.is-loading .spinner")).to_have_count(4)
    expect(page.locator("#explain-dialog .map-figure.is-loading .spinner").first).to_be_visible()
    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/api/explain?*")
    page.wait_for_function(EXPLANATION_LOADED)

    hit = server.upload(query, 5)["hits"][0]
    assert hit["id"] == hits[0]["id"]
    explanation = server.api(hit["explain_url"])
    overlays = page.eval_on_selector_all("#explain-dialog .map-overlay", """images => images.map(image => ({
        alt: image.alt, size: [image.naturalWidth, image.naturalHeight], src: image.getAttribute('src'),
        opacity: getComputedStyle(image).opacity}))""")
    assert sorted(overlay["alt"] for overlay in overlays) == OVERLAY_ALTS
    assert all(overlay["size"] == [96, 72] and "style=heatmap" in overlay["src"] for overlay in overlays)
    assert page.eval_on_selector_all("#explain-dialog .map-base", "images => images.map(i => i.naturalWidth)") == [96] * 4
    verdict = explanation["verdict"]
    called = "similar" if verdict == "similar" else "not similar"
    percent = math.floor(100 * explanation["match"])
    expect(page.locator("#verdict-badge")).to_have_text(called)
    expect(page.locator("#verdict-score")).to_have_text(f"{percent}% match")
    # One plain sentence: no score next to a cut on another scale, no jargon, no markdown.
    sentence = page.locator("#verdict-text").inner_text()
    assert sentence.startswith(f"whysim calls these two images {called}: they match at {percent}%, "
                               f"and 50% or more means similar.")
    assert not re.search(r"(cut|threshold)\D{0,12}\d|`|normalised|factual", sentence), sentence
    # Each hit shows the same verdict and figure as its explanation, and the page says which rule made it.
    expect(page.locator(f".hit[data-id='{hit['id']}'] .hit-verdict")).to_have_text(
        "similar" if hit["verdict"] == "similar" else "not similar")
    expect(page.locator(f".hit[data-id='{hit['id']}'] .score-value")).to_have_text(f"{percent}% match")
    expect(page.locator("#verdict-rule")).to_contain_text("Verdicts: similar when")
    expect(page.locator("#factual-sentence")).to_have_text(f"Regions that support the verdict ({called}).")
    expect(page.locator("#counterfactual-sentence")).to_contain_text("Regions that argue against it")
    expect(page.locator("#query-column")).to_have_text("Query: query.jpg (uploaded)")
    expect(page.locator("#hit-column")).to_have_text(f"Hit #1: {hits[0]['name']}")

    # An empty map (peak below EMPTY_MAP_PEAK, as the CLI panel's "none") says so instead of
    # showing a flat colour. This pair has one (the query's factual map: nothing in it raises
    # the similarity), so the note is exercised.
    empty = [max(map(max, explanation["raw"][side][kind])) < EMPTY_MAP_PEAK for side, kind in FIGURES]
    assert any(empty) and not all(empty)
    for is_empty, (side, kind) in zip(empty, FIGURES):
        note = page.locator(f'#explain-dialog .map-figure[data-side="{side}"][data-kind="{kind}"] .map-note')
        if is_empty:
            expect(note).to_be_visible()
            expect(note).to_have_text(f"Empty map: no region here {EMPTY_WORDS[kind]}")
        else:
            expect(note).to_be_hidden()

    assert {overlay["opacity"] for overlay in overlays} == {"0.5"}
    page.screenshot(path=artifacts / "explanation.png")
    page.locator("#opacity-slider").focus()
    for _ in range(6):
        page.keyboard.press("ArrowRight")  # step 5: 50% -> 80%
    expect(page.locator("#opacity-value")).to_have_text("80%")
    opacities = page.eval_on_selector_all("#explain-dialog .map-overlay", "images => images.map(i => getComputedStyle(i).opacity)")
    assert opacities == ["0.8"] * 4
    page.keyboard.press("Escape")
    expect(page.locator("#explain-dialog")).to_be_hidden()


def test_more_like_this_searches_with_the_hit_and_back_returns(page: Page, server: LiveServer) -> None:
    open_search(page, server)
    page.select_option("#k-select", "5")
    choose_file(page, photo_jpeg(1005))
    first = shown_hits(page, 5)
    chosen = first[1]
    page.locator("#hits .hit").nth(1).get_by_role("button", name="More like this").click()
    expect(page.locator("#results-heading")).to_have_text(f"More like {chosen['name']}")
    hits = shown_hits(page, 5)
    expected = server.api("api/search", {"image_id": chosen["id"], "k": 5})["hits"]
    assert ids(hits) == ids(expected) and chosen["id"] not in ids(hits)
    expect(page.locator("#query-image")).to_have_attribute("alt", f"query: {chosen['name']}")
    assert f"id={chosen['id']}" in page.url
    page.go_back()
    expect(page.locator("#results-heading")).to_have_text("Most similar to your image")
    assert ids(shown_hits(page, 5)) == ids(first)


def test_collection_gallery_pages_and_results_load_more(page: Page, server: LiveServer) -> None:
    open_search(page, server)  # the default k, 10
    page.get_by_role("button", name="Pick from the collection").click()
    items = page.locator("#gallery-grid .gallery-item")
    expect(items).to_have_count(24)
    expect(page.locator("#gallery-range")).to_have_text(f"Images 1–24 of {COLLECTION_SIZE}")
    expect(page.get_by_role("button", name="Previous", exact=True)).to_be_disabled()
    page.get_by_role("button", name="Next", exact=True).click()
    expect(items).to_have_count(COLLECTION_SIZE - 24)
    expect(page.locator("#gallery-range")).to_have_text(f"Images 25–{COLLECTION_SIZE} of {COLLECTION_SIZE}")
    expect(page.get_by_role("button", name="Next", exact=True)).to_be_disabled()
    picked = server.api("api/images?offset=24&limit=24")["images"][0]
    expect(items.first.locator("img")).to_have_attribute("alt", f"collection image: {file_name(picked['path'])}")

    items.first.click()
    expect(page.locator("#gallery")).to_be_hidden()
    expect(page.locator("#results-heading")).to_have_text(f"More like {file_name(picked['path'])}")
    shown_hits(page, 10)
    more = page.get_by_role("button", name="Load more")
    more.click()
    shown_hits(page, 20)
    expect(page.locator("#results-count")).to_have_text("20 results, best first")
    more.click()
    hits = shown_hits(page, COLLECTION_SIZE - 1)
    expect(more).to_be_hidden()
    expect(page.locator("#end-note")).to_have_text(f"All {COLLECTION_SIZE - 1} results shown, ranked by cosine similarity.")
    expected = server.api("api/search", {"image_id": picked["id"], "k": 100})["hits"]
    assert ids(hits) == ids(expected) and [hit["rank"] for hit in hits] == list(range(1, COLLECTION_SIZE))


def test_an_invalid_upload_shows_an_error_message(page: Page, server: LiveServer, artifacts: Path) -> None:
    open_search(page, server)
    choose_file(page, b"these are notes, not pixels", name="notes.jpg")
    message = page.locator("#message")
    expect(message).to_be_visible()
    expect(message).to_have_attribute("role", "alert")
    expect(message.locator(".message-title")).to_have_text("“notes.jpg” cannot be used as a query")
    expect(message.locator(".message-text")).to_contain_text("Not a recognised image format")
    expect(page.locator("#results")).to_be_hidden()
    page.screenshot(path=artifacts / "invalid-upload.png")
    choose_file(page, photo_jpeg(1006))  # a good image afterwards clears the message
    shown_hits(page, 10)
    expect(message).to_be_hidden()


def test_an_upload_the_server_no_longer_holds_asks_for_it_again(page: Page, server: LiveServer) -> None:
    open_search(page, server, "?q=" + "ab" * 32)
    expect(page.locator("#message .message-title")).to_have_text("Not found")
    expect(page.locator("#message .message-text")).to_contain_text("upload the query again")


def test_a_rate_limited_upload_asks_to_wait(browser: Browser, ui_index: DataDir, tmp_path: Path) -> None:
    with serving(ui_index, tmp_path / "serve.log", "--upload-limit", "1/minute") as live, \
            open_page(browser, DESKTOP) as page:
        open_search(page, live)
        choose_file(page, photo_jpeg(1011))
        shown_hits(page, 10)
        choose_file(page, photo_jpeg(1012))  # the second upload in a minute: 429
        expect(page.locator("#message .message-title")).to_have_text("Please wait a moment")
        expect(page.locator("#message .message-text")).to_contain_text("too many of these requests")
        expect(page.locator("#message .message-text")).to_contain_text(re.compile(r"Try again in \d+ seconds?\."))


def test_an_empty_index_says_how_to_fill_it(browser: Browser, tmp_path: Path, artifacts: Path) -> None:
    empty = DataDir(tmp_path / "empty")
    with serving(empty, tmp_path / "serve.log") as live, open_page(browser, DESKTOP) as page:
        page.goto(live.url)
        expect(page.locator("#status")).to_have_attribute("data-state", "empty")
        expect(page.locator("#status")).to_have_text("No index yet")
        expect(page.locator("#message .message-title")).to_have_text("No images are indexed yet")
        # /api/stats shows no paths to clients without the admin token: the page says the command plainly.
        expect(page.locator("#message .message-text")).to_contain_text("whysim index PHOTOS/")
        expect(page.locator("#message .message-text")).not_to_contain_text("null")
        expect(page.locator("#file-input")).to_be_disabled()
        expect(page.get_by_role("button", name="Pick from the collection")).to_be_disabled()
        page.screenshot(path=artifacts / "empty-index.png")


def test_the_page_fits_a_phone(phone_page: Page, server: LiveServer, artifacts: Path) -> None:
    page = phone_page
    open_search(page, server)
    choose_file(page, photo_jpeg(1007))
    shown_hits(page, 10)
    assert page.eval_on_selector("#hits", "grid => getComputedStyle(grid).gridTemplateColumns.split(' ').length") == 2
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    scroll_through(page)
    page.screenshot(path=artifacts / "phone-results.png", full_page=True)
    open_explanation(page, 0)
    dialog_box = page.locator("#explain-dialog").bounding_box()
    assert dialog_box is not None and dialog_box["width"] <= PHONE["width"]
    assert page.eval_on_selector("#explain-dialog", "dialog => dialog.scrollWidth <= dialog.clientWidth")
    page.screenshot(path=artifacts / "phone-explanation.png")
