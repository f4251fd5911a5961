"""Matched regions in the explanation dialog, on real photos (samples/flowers indexed at 224 px,
a 7x7 grid) in headless Chromium: the top pairs are drawn as numbered boxes joined by lines, and
pointing at a region of one image lights up the region of the other that the API says it matches.
Screenshots go to test-artifacts/."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT
from playwright.sync_api import Page, expect

from web_ui.conftest import LiveServer, serving
from whysim.indexer.datadir import DataDir
from whysim.webui.cli import cli

SAMPLES = REPO_ROOT / "samples" / "flowers"
MATCHES_DRAWN = """() => {
    const images = Array.from(document.querySelectorAll('#match-row .match-image'));
    return images.length === 2 && images.every(image => image.complete && image.naturalWidth > 0)
        && document.querySelectorAll('#match-row .match-links line').length > 0;
}"""


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    datadir = DataDir(tmp_path_factory.mktemp("photos-index") / "data")
    result = CliRunner().invoke(cli, ["index", str(SAMPLES), "--data-dir", str(datadir.root), "--input-size", "224",
                                      "--workers", "0", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with serving(datadir, tmp_path_factory.mktemp("photo-logs") / "serve.log") as live:
        yield live


def first_photo_id(server: LiveServer, name: str) -> int:
    images = server.api("api/images?limit=100")["images"]
    return next(image["id"] for image in images if image["path"].endswith(name))


def point_of(page: Page, side: str, box: list[int], size: list[int]) -> tuple[float, float]:
    """The page coordinates of a box's centre (box in original pixels) on one side's image."""
    rect = page.locator(f'#match-row .match-figure[data-side="{side}"] .match-image').bounding_box()
    assert rect is not None
    return (rect["x"] + (box[0] + box[2]) / 2 / size[0] * rect["width"],
            rect["y"] + (box[1] + box[3]) / 2 / size[1] * rect["height"])


def cell_box(cell: int, grid: list[int], size: list[int]) -> list[float]:
    rows, columns = grid
    row, column = divmod(cell, columns)
    return [column * size[0] / columns, row * size[1] / rows, (column + 1) * size[0] / columns,
            (row + 1) * size[1] / rows]


def highlight(page: Page, side: str):
    return page.locator(f'#match-row .match-figure[data-side="{side}"] .match-highlight')


def same_rect(first: dict | None, second: dict | None) -> bool:
    assert first is not None and second is not None
    return all(abs(first[key] - second[key]) <= 1.5 for key in ("x", "y", "width", "height"))


def test_pointing_at_a_query_region_lights_up_its_match_in_the_hit(page: Page, photo_server: LiveServer,
                                                                    artifacts: Path) -> None:
    query_id = first_photo_id(photo_server, "305160642_53cde0f44f.jpg")  # a daisy
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{photo_server.url}?id={query_id}&k=5")
    expect(page.locator("#hits .hit:not(.skeleton)")).to_have_count(5)
    hit_id = int(page.locator("#hits .hit").first.get_attribute("data-id"))
    page.locator("#hits .hit").first.get_by_role("button", name="Explain").click()
    page.wait_for_function(MATCHES_DRAWN)
    body = photo_server.api(f"api/explain?query={query_id}&hit={hit_id}")
    correspondence, matches = body["correspondence"], body["matches"]
    assert correspondence["query_grid"] == [7, 7] and len(matches) == 5

    # The top pairs: numbered, colour-matched boxes on both images and one line per pair.
    for side in ("query", "hit"):
        boxes = page.locator(f'#match-row .match-figure[data-side="{side}"] .match-box')
        expect(boxes).to_have_count(5)
        expect(boxes.first).to_have_text("1")
    expect(page.locator("#match-row .match-links line")).to_have_count(5)
    # Every pair is listed once, under "for" or "against" the match, in drawing order, with its part of
    # what that list carries (0-100 %, adding up to 100 %), never a share of the similarity that a small
    # one inflates; the tooltip gives its part of all the evidence on that side.
    for supports, group in ((True, "#match-for"), (False, "#match-against")):
        members = [match for match in matches if match["supports"] == supports]
        items = page.locator(f"{group} li")
        expect(items).to_have_count(len(members))
        carried = sum(match["evidence_share"] for match in members)
        for item, match in zip(items.all(), members):
            assert 0 <= match["evidence_share"] <= 1
            word = "for" if supports else "against"
            expect(item).to_have_text(f"{match['rank']}: {100 * match['evidence_share'] / carried:.0f}%")
            expect(item).to_have_attribute("title", f"{100 * match['evidence_share']:.1f}% of all the evidence {word} "
                                                    f"the match")
    hit_box_one = page.locator('#match-row .match-figure[data-side="hit"] .match-box[data-rank="1"]')
    assert same_rect(hit_box_one.bounding_box(), page.locator(
        '#match-row .match-figure[data-side="hit"] .match-box').first.bounding_box())

    # Point at the top pair's query box: the hit's highlight sits on that pair's hit box.
    page.mouse.move(*point_of(page, "query", matches[0]["query_box"], correspondence["query_size"]))
    target = highlight(page, "hit")
    expect(target).to_be_visible()
    expect(target).to_have_attribute("data-cells", ",".join(map(str, matches[0]["hit_cells"])))
    expect(target).to_have_attribute("data-rank", "1")
    assert same_rect(target.bounding_box(), hit_box_one.bounding_box())
    expect(highlight(page, "query")).to_have_attribute("data-cells", ",".join(map(str, matches[0]["query_cells"])))
    page.screenshot(path=artifacts / "explanation-matches.png")

    # A query cell outside the top pairs: the highlight moves to the cell the API says it matches.
    in_pairs = {side: {cell for match in matches for cell in match[f"{side}_cells"]} for side in ("query", "hit")}
    other = next(cell for cell, matched in enumerate(correspondence["query_to_hit"])
                 if cell not in in_pairs["query"] and matched not in matches[0]["hit_cells"])
    box = cell_box(other, correspondence["query_grid"], correspondence["query_size"])
    page.mouse.move(*point_of(page, "query", box, correspondence["query_size"]))
    expect(target).to_have_attribute("data-cells", str(correspondence["query_to_hit"][other]))
    expect(target).not_to_have_attribute("data-rank", "1")

    # And the other way round: a hit cell lights up the query cell it matches.
    hit_cell = next(cell for cell in (24, *range(49)) if cell not in in_pairs["hit"])  # the centre, if free
    box = cell_box(hit_cell, correspondence["hit_grid"], correspondence["hit_size"])
    page.mouse.move(*point_of(page, "hit", box, correspondence["hit_size"]))
    expect(highlight(page, "query")).to_have_attribute("data-cells", str(correspondence["hit_to_query"][hit_cell]))
    expect(highlight(page, "query")).to_have_attribute("data-role", "target")
    page.mouse.move(5, 5)  # leaving the image clears the highlights
    expect(highlight(page, "query")).to_be_hidden()
    page.locator("#explain-dialog .explain-body").screenshot(path=artifacts / "explanation-dialog.png")
