"""The pages outside /api/: the search page's shell and assets, HTML error pages that leave the
API's JSON errors alone, and `whysim serve` refusing a port that is taken."""
from __future__ import annotations

import re
import socket

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from whysim.indexer.datadir import DataDir
from whysim.webui.app import create_app
from whysim.webui.cli import cli


def client_for(datadir: DataDir, **config: object) -> FlaskClient:
    app: Flask = create_app({"TESTING": True, "WHYSIM_DATA_DIR": str(datadir.root), **config})
    return app.test_client()


@pytest.fixture(scope="module")
def client(ui_index: DataDir) -> FlaskClient:
    return client_for(ui_index)


def test_search_page_links_assets_that_are_served(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert {"/static/whysim.css", "/static/js/main.js", "/static/favicon.svg"} <= set(assets)
    modules = ["/static/js/main.js"]
    for url in assets + modules:
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):  # every module main.js imports is served too
            imported = re.findall(r'from "\./([\w.]+)"', asset.get_data(as_text=True))
            modules += [f"/static/js/{name}" for name in imported if f"/static/js/{name}" not in modules]
    assert len(modules) > 5
    assert 'alt=""' not in html and re.findall(r"<img(?![^>]*\balt=\")", html) == []


def test_result_counts_offered_follow_the_server_limits(client: FlaskClient, ui_index: DataDir) -> None:
    def options(html: str) -> list[tuple[str, bool]]:
        return [(value, bool(selected)) for value, selected in
                re.findall(r'<option value="(\d+)"( selected)?>', html)]

    assert options(client.get("/").get_data(as_text=True)) == [
        ("5", False), ("10", True), ("20", False), ("50", False), ("100", False)]
    capped = client_for(ui_index, WHYSIM_MAX_K=30, WHYSIM_DEFAULT_K=8)
    assert options(capped.get("/").get_data(as_text=True)) == [("5", False), ("8", True), ("10", False), ("20", False)]


def test_errors_are_pages_outside_the_api_and_json_inside(client: FlaskClient) -> None:
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "Page not found" in missing.get_data(as_text=True)
    wrong_method = client.post("/")
    assert wrong_method.status_code == 405 and "Method not allowed" in wrong_method.get_data(as_text=True)
    api_missing = client.get("/api/no/such/thing")
    assert api_missing.status_code == 404 and api_missing.json == {"error": "no such endpoint: /api/no/such/thing"}
    api_method = client.delete("/api/stats")
    assert api_method.status_code == 405 and api_method.is_json and "use GET" in api_method.json["error"]


def test_serve_says_when_it_cannot_listen(ui_index: DataDir) -> None:
    serve = ["serve", "--data-dir", str(ui_index.root)]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, [*serve, "--port", str(port)])
    assert result.exit_code == 1 and f"Port {port} is in use" in result.output, result.output
    not_ours = CliRunner().invoke(cli, [*serve, "--host", "192.0.2.1", "--port", "0"])  # TEST-NET-1
    assert not_ours.exit_code == 1 and "Cannot assign requested address" in not_ours.output, not_ours.output
    assert "Traceback" not in result.output + not_ours.output
