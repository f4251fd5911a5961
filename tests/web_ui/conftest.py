"""A live `whysim serve` (the real CLI, in a subprocess, on a free loopback port) over a small
real index of generated images, and headless Chromium driven by Playwright.

Chromium is Debian's (/usr/bin/chromium, installed by `make test`), never a downloaded one.
Screenshots go to test-artifacts/ (not committed) for people to look at.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT, encode, make_picture
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from search_layer.collection import run_index

from whysim.indexer.datadir import DataDir

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and none of Chromium's background connections (this network is closed).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--mute-audio"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
COLLECTION_SIZE = 28  # more than one gallery page (24) and than two pages of 10 hits
PICTURE_SIZE = (96, 72)
URL_LINE = re.compile(r" at (http://\S+/) ")
START_TIMEOUT_S = 90
# Waits are generous because CI machines can be slow and shared; a passing test rarely waits long.
WAIT_TIMEOUT_MS = 30_000
expect.set_options(timeout=WAIT_TIMEOUT_MS)


@dataclass(frozen=True)
class LiveServer:
    url: str
    datadir: DataDir

    def api(self, path: str, payload: dict | None = None) -> dict:
        """The JSON API over HTTP, as the page sees it (POST when there is a payload)."""
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def upload(self, data: bytes, k: int) -> dict:
        boundary = "whysim-test-boundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n{k}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.url + "api/search", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)


def photo_jpeg(seed: int) -> bytes:
    """A generated photo: seeds below COLLECTION_SIZE are in the collection, others are not."""
    return encode(make_picture(seed, PICTURE_SIZE, "stripes" if seed % 2 else "blobs"))


@pytest.fixture(scope="session")
def ui_index(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """COLLECTION_SIZE generated photos in two labelled folders, indexed by the real `whysim index`."""
    root = tmp_path_factory.mktemp("ui") / "photos"
    for seed in range(COLLECTION_SIZE):
        label = "stripes" if seed % 2 else "blobs"
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{label}_{seed:03d}.jpg").write_bytes(photo_jpeg(seed))
    datadir = DataDir(tmp_path_factory.mktemp("ui-index") / "data")
    run_index(root, datadir)
    return datadir


def wait_until_serving(process: subprocess.Popen, log: Path) -> str:
    """The page URL that `whysim serve` prints, once its API answers."""
    deadline = time.monotonic() + START_TIMEOUT_S
    url = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"whysim serve exited:\n{log.read_text()}"
        if url is None:
            found = URL_LINE.search(log.read_text())
            url = found.group(1) if found else None
        if url is not None:
            try:
                with urllib.request.urlopen(url + "api/stats", timeout=5):
                    return url
            except (urllib.error.URLError, ConnectionError):
                pass
        time.sleep(0.2)
    raise AssertionError(f"whysim serve did not start in {START_TIMEOUT_S} s:\n{log.read_text()}")


@contextmanager
def serving(datadir: DataDir, log: Path, *options: str) -> Iterator[LiveServer]:
    """`whysim serve --port 0 OPTIONS` on loopback; its output goes to `log` (a pipe nobody read would fill up)."""
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-c", "from whysim.webui.cli import main; main()", "serve",
                                    "--data-dir", str(datadir.root), "--host", "127.0.0.1", "--port", "0", *options],
                                   stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        yield LiveServer(wait_until_serving(process, log), datadir)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def server(ui_index: DataDir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(ui_index, tmp_path_factory.mktemp("logs") / "serve.log") as live:
        yield live


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium and chromium-driver "
                    "(or: apt-get install chromium chromium-driver)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@contextmanager
def open_page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    """A fresh browser context; fails the test on any script error or console error."""
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    context.set_default_timeout(WAIT_TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def console(message: ConsoleMessage) -> None:
        # Failed requests the page handles itself (e.g. a 400 for a bad upload) are logged by
        # Chromium as console errors too; those start with "Failed to load resource".
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console error: {message.text}")

    page.on("console", console)
    try:
        yield page
        assert not problems, problems
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser, DESKTOP) as opened:
        yield opened


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    with open_page(browser, PHONE) as opened:
        yield opened
