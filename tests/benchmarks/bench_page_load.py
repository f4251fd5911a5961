"""What one person waits for on the search page: the page load (headless Chromium, a fresh profile
each time, until the header says the collection is ready and the first results' thumbnails are
shown), a search by upload (every upload distinct) and an explanation (every pair distinct), one
at a time over HTTP on loopback, against `whysim serve` on DATA_DIR (rate limits off).

Run it for two checkouts in the same quiet period (under the heavy-jobs lock) to compare them, e.g.
before and after a change, each with its own interpreter on the same data directory:

    flock /tmp/whysim-heavy.lock .venv/bin/python tests/benchmarks/bench_page_load.py DATA_DIR [--runs 10]
"""
from __future__ import annotations

import argparse
import io
import random
import sqlite3
import statistics
import time
import urllib.request
from pathlib import Path

from http_load import multipart_image, whysim_server
from PIL import Image
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
SHOWN = """() => document.getElementById('status').dataset.state === 'ready'
    && document.querySelectorAll('#hits .hit:not(.skeleton)').length > 0
    && Array.from(document.querySelectorAll('#hits .thumb img')).slice(0, 4)
        .every(image => image.complete && image.naturalWidth > 0)"""


def indexed(data_dir: Path) -> list[tuple[int, Path]]:
    with sqlite3.connect(f"file:{data_dir / 'catalog.sqlite3'}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT images.id, collections.root, images.path FROM images JOIN collections "
                                  "ON images.collection_id = collections.id WHERE status = 'indexed' ORDER BY images.id")
        return [(image_id, Path(root) / path) for image_id, root, path in rows]


def distinct_jpeg(path: Path, rng: random.Random) -> bytes:
    """The photo with one pixel changed: new bytes, so the server embeds it again."""
    image = Image.open(path).convert("RGB")
    image.putpixel((rng.randrange(image.width), rng.randrange(image.height)), (rng.randrange(256),) * 3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    images = indexed(args.data_dir)
    rng = random.Random(0)
    with whysim_server(args.data_dir, "--no-rate-limits", "--no-access-log") as server:
        base = f"http://127.0.0.1:{server.port}"

        def upload(data: bytes) -> None:
            body, content_type = multipart_image(data, 10)
            request = urllib.request.Request(f"{base}/api/search", data=body, headers={"Content-Type": content_type})
            urllib.request.urlopen(request, timeout=300).read()

        def explain(query: int, hit: int) -> None:
            urllib.request.urlopen(f"{base}/api/explain?query={query}&hit={hit}", timeout=300).read()

        upload(distinct_jpeg(images[0][1], rng))  # loads the model before any clock starts
        explain(images[0][0], images[1][0])
        uploads = [timed(lambda: upload(distinct_jpeg(rng.choice(images)[1], rng))) for _ in range(args.runs)]
        pairs = [(images[i][0], images[-1 - i][0]) for i in range(1, args.runs + 1)]
        explains = [timed(lambda pair=pair: explain(*pair)) for pair in pairs]
        loads = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for run in range(args.runs + 1):
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{base}/?id={images[run % len(images)][0]}&k=10")
                page.wait_for_function(SHOWN, timeout=120_000)
                if run:  # the first load warms the server's thumbnails
                    loads.append((time.perf_counter() - started) * 1000)
                context.close()
            browser.close()
    print(f"{'what':<34} {'median ms':>10} {'min ms':>8}  (runs {args.runs})")
    for name, times in (("page load to first results", loads), ("search by upload (HTTP)", uploads),
                        ("explanation (HTTP)", explains)):
        print(f"{name:<34} {statistics.median(times):>10.1f} {min(times):>8.1f}", flush=True)


if __name__ == "__main__":
    main()
