"""The search page as a first-week user meets it (issue 22), in headless Chromium at desktop and
phone size against a live `whysim serve`: links to upload searches survive a restart, an error
keeps the results beside it, one person on a loopback server never meets a rate limit, the
explanation dialog works on a phone and from the keyboard, the header speaks plainly, and each
hit has its size, a larger view (arrow keys between hits), arrow-key navigation and drag-to-search.
Screenshots go to test-artifacts/."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from search_layer.collection import run_index

from web_ui.conftest import DESKTOP, PHONE, LiveServer, open_page, photo_jpeg, serving
from web_ui.test_search_page import (
    ALL_THUMBNAILS_LOADED,
    choose_file,
    file_name,
    open_explanation,
    open_search,
    shown_hits,
)
from whysim.indexer.datadir import DataDir

SIZES = {"desktop": DESKTOP, "phone": PHONE}
DROP_LINK = """([link]) => {
    const transfer = new DataTransfer();
    transfer.setData('text/uri-list', link);
    document.getElementById('dropzone').dispatchEvent(
        new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def test_a_link_to_an_upload_search_survives_a_restart(browser: Browser, ui_index: DataDir, tmp_path: Path,
                                                       artifacts: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    shutil.copytree(ui_index.root, datadir.root, ignore=shutil.ignore_patterns("writer.lock"))
    with open_page(browser, DESKTOP) as page:
        with serving(datadir, tmp_path / "first.log") as first:
            open_search(page, first)
            choose_file(page, photo_jpeg(2001))
            before = [card["id"] for card in shown_hits(page, 10)]
            link = page.url.replace(first.url, "")
    with serving(datadir, tmp_path / "second.log") as second:  # a new process: nothing in memory
        for size, viewport in SIZES.items():
            with open_page(browser, viewport) as page:
                open_search(page, second, link)
                assert [card["id"] for card in shown_hits(page, 10)] == before
                expect(page.locator("#message")).to_be_hidden()
                page.wait_for_function("() => document.getElementById('query-image').naturalWidth > 0")
                page.screenshot(path=artifacts / f"upload-link-after-restart-{size}.png")


@pytest.mark.parametrize("size", SIZES)
def test_a_failed_upload_keeps_the_previous_results_beside_the_error(browser: Browser, server: LiveServer,
                                                                     artifacts: Path, size: str) -> None:
    with open_page(browser, SIZES[size]) as page:
        open_search(page, server, "?id=3&k=5")
        before = [card["id"] for card in shown_hits(page, 5)]
        choose_file(page, b"not pixels", name="notes.jpg")
        expect(page.locator("#message .message-title")).to_have_text("“notes.jpg” cannot be used as a query")
        assert [card["id"] for card in shown_hits(page, 5)] == before
        expect(page.locator("#results")).to_be_visible()
        expect(page.locator("#results-heading")).to_contain_text("More like")
        assert "id=3" in page.url
        page.screenshot(path=artifacts / f"error-beside-results-{size}.png")


def test_one_person_on_the_default_loopback_server_never_meets_the_upload_limit(server: LiveServer) -> None:
    for attempt in range(25):  # the 21st would be refused on a server others reach (20/minute)
        assert server.upload(photo_jpeg(2100 + attempt % 2), 3)["hits"]


@pytest.mark.parametrize("size", SIZES)
def test_the_explanation_dialog_on_every_screen(browser: Browser, server: LiveServer, artifacts: Path,
                                                size: str) -> None:
    viewport = SIZES[size]
    with open_page(browser, viewport) as page:
        open_search(page, server, "?id=4&k=5")
        shown_hits(page, 5)
        open_explanation(page, 0)
        dialog = page.locator("#explain-dialog")
        captions = dialog.locator(".match-caption")
        if size == "phone":  # the column headers are hidden there: each image says which it is
            expect(captions.nth(0)).to_be_visible()
            expect(captions.nth(0)).to_contain_text("Query")
            expect(captions.nth(1)).to_contain_text("Hit #1")
        hit_name = dialog.locator('.match-figure[data-side="hit"] .match-name').inner_text()
        assert hit_name.startswith("#1 ") and hit_name.endswith(".jpg")  # the whole name, not cut off
        height = page.eval_on_selector("#explain-dialog", "dialog => dialog.scrollHeight")
        assert height < 3 * viewport["height"], height

        page.eval_on_selector("#explain-dialog", "dialog => dialog.scrollTo(0, dialog.scrollHeight)")
        close = page.locator("#explain-close")
        box = close.bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"]
        page.screenshot(path=artifacts / f"explanation-{size}-scrolled.png")
        page.eval_on_selector("#explain-dialog", "dialog => dialog.scrollTo(0, 0)")

        first_box = dialog.locator('.match-figure[data-side="query"] .match-box').first
        first_box.focus()  # the keyboard's way: Tab reaches the numbered boxes
        rank = first_box.get_attribute("data-rank")
        for side in ("query", "hit"):
            highlight = dialog.locator(f'.match-figure[data-side="{side}"] .match-highlight')
            expect(highlight).to_be_visible()
            expect(highlight).to_have_attribute("data-rank", rank or "")
        tag = first_box.locator("span").bounding_box()
        outline = first_box.bounding_box()
        assert tag and outline and tag["y"] + tag["height"] <= outline["y"] + 3  # the number sits above the box
        page.screenshot(path=artifacts / f"explanation-{size}-keyboard.png")
        page.keyboard.press("Tab")
        expect(page.locator("#explain-dialog .match-highlight").first).to_be_visible()
        close.click()
        expect(dialog).to_be_hidden()


@pytest.mark.parametrize("size", SIZES)
def test_hits_show_their_size_and_open_larger_with_arrow_keys_between(browser: Browser, server: LiveServer,
                                                                      artifacts: Path, size: str) -> None:
    with open_page(browser, SIZES[size]) as page:
        open_search(page, server, "?id=5&k=5")
        cards = shown_hits(page, 5)
        expected = server.api("api/search", {"image_id": 5, "k": 5})["hits"]
        sizes = page.locator("#hits .hit-file").all_inner_texts()
        assert sizes == [f"{hit['width']} × {hit['height']} px · {round(hit['size_bytes'] / 1000)} kB"
                         if hit["size_bytes"] >= 1000 else f"{hit['width']} × {hit['height']} px · {hit['size_bytes']} B"
                         for hit in expected]
        page.wait_for_function(ALL_THUMBNAILS_LOADED)

        page.locator("#hits .hit .thumb").first.click()
        lightbox = page.locator("#lightbox")
        expect(lightbox).to_be_visible()
        expect(page.locator("#lightbox-name")).to_have_text(f"#1 {expected[0]['path']}")
        page.wait_for_function("() => document.getElementById('lightbox-image').naturalWidth > 0")
        page.screenshot(path=artifacts / f"lightbox-{size}.png")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#lightbox-name")).to_have_text(f"#2 {expected[1]['path']}")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")  # wraps round to the last
        expect(page.locator("#lightbox-name")).to_have_text(f"#5 {expected[4]['path']}")
        page.keyboard.press("Escape")
        expect(lightbox).to_be_hidden()
        assert page.evaluate("location.pathname") == "/" and cards


@pytest.mark.parametrize("size", SIZES)
def test_arrow_keys_move_between_results(browser: Browser, server: LiveServer, size: str, artifacts: Path) -> None:
    with open_page(browser, SIZES[size]) as page:
        move_between_results_with_arrow_keys(page, server)
        page.screenshot(path=artifacts / f"arrow-keys-{size}.png")


def move_between_results_with_arrow_keys(page: Page, server: LiveServer) -> None:
    open_search(page, server, "?id=6&k=10")
    shown_hits(page, 10)
    columns = page.eval_on_selector("#hits", "grid => getComputedStyle(grid).gridTemplateColumns.split(' ').length")
    focused = "() => document.activeElement.closest('.hit')?.dataset.rank"
    page.locator("#hits .hit .thumb").first.focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate(focused) == "2"
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == str(2 + columns)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    assert page.evaluate(focused) == "1"


@pytest.mark.parametrize("size", SIZES)
def test_dropping_a_result_link_searches_with_it_and_other_links_are_never_fetched(browser: Browser,
                                                                                    server: LiveServer,
                                                                                    size: str,
                                                                                    artifacts: Path) -> None:
    with open_page(browser, SIZES[size]) as page:
        drop_links(page, server)
        page.screenshot(path=artifacts / f"dropped-link-refused-{size}.png")


def drop_links(page: Page, server: LiveServer) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_search(page, server, "?id=7&k=5")
    cards = shown_hits(page, 5)
    link = page.locator("#hits .hit .thumb").nth(1).get_attribute("href")
    page.evaluate(DROP_LINK, [server.url.rstrip("/") + (link or "")])
    expect(page.locator("#results-heading")).to_have_text(f"More like {file_name(cards[1]['name'])}")
    assert f"id={cards[1]['id']}" in page.url

    page.evaluate(DROP_LINK, ["https://images.example.org/cat.jpg"])
    expect(page.locator("#message .message-title")).to_have_text("Only this collection's images can be dropped as links")
    assert not [url for url in requested if "example.org" in url]


def test_the_header_lists_the_duplicates_it_counts(browser: Browser, tmp_path: Path, artifacts: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for seed in range(4):
        (root / f"photo_{seed}.jpg").write_bytes(photo_jpeg(seed))
    (root / "photo_2_copy.jpg").write_bytes(photo_jpeg(2))
    datadir = DataDir(tmp_path / "data")
    run_index(root, datadir)
    for size, viewport in SIZES.items():
        with serving(datadir, tmp_path / f"{size}.log") as live, open_page(browser, viewport) as page:
            open_search(page, live)
            expect(page.locator("#status")).to_contain_text("4 images")
            page.get_by_role("button", name="1 duplicate").click()
            rows = page.locator("#duplicates-list li")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_text("photo_2_copy.jpg — same bytes as photo_2.jpg")
            page.screenshot(path=artifacts / f"duplicates-{size}.png")
            rows.first.get_by_role("link").click()
            expect(page.locator("#results-heading")).to_have_text("More like photo_2.jpg")
