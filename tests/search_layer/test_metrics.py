"""/metrics: Prometheus text that prometheus_client parses, counters that move with requests,
the service's state (queue, caches, index); behind the admin token or on its own port; and one
logfmt access-log line per request."""
from __future__ import annotations

import logging
import re
import urllib.error
import urllib.request

import pytest
from benchmarks.http_load import free_port, whysim_server
from prometheus_client.parser import text_string_to_metric_families

from search_layer.conftest import ANY_CATALOG
from whysim.search.api.access_log import LOGGER_NAME, logfmt

TOKEN = "correct-horse-battery-staple-42"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def parse_logfmt(line: str) -> dict[str, str]:
    """The reverse of logfmt(): reads a log line back."""
    found = {}
    for match in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        key, value = match.groups()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value[1:-1])
        found[key] = value
    return found


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(client) -> dict:
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def requests_to(found: dict, route: str, status: str = "200", method: str = "GET") -> float:
    return found.get(("whysim_http_requests_total",
                      (("method", method), ("route", route), ("status", status))), 0.0)


@pytest.fixture
def client(make_app, built_index):
    return make_app(built_index, WHYSIM_ADMIN_TOKEN=TOKEN).test_client()


def test_metrics_need_the_admin_token(client, make_app, built_index) -> None:
    assert client.get("/metrics").status_code == 401
    read_only = make_app(built_index).test_client()
    assert read_only.get("/metrics").status_code == 401  # no credentials sent
    assert read_only.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


def test_request_counters_and_histograms_move_with_requests(client, images) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/api/stats").status_code == 200
    assert client.get("/api/images/987654").status_code == 404
    assert client.get("/api/no/such/thing").status_code == 404
    after = scrape(client)
    assert requests_to(after, "/api/stats") - requests_to(before, "/api/stats") == 3
    assert requests_to(after, "/api/images/<int:image_id>", "404") - \
        requests_to(before, "/api/images/<int:image_id>", "404") == 1
    assert requests_to(after, "<unmatched>", "404") >= 1
    count = ("whysim_http_request_duration_seconds_count", (("method", "GET"), ("route", "/api/stats"),
                                                            ("status", "200")))
    assert after[count] - before.get(count, 0) == 3


def test_service_state_is_exported(client, images) -> None:
    first, second = images["blobs/blobs_001.jpg"].id, images["stripes/stripes_004.jpg"].id
    before = scrape(client)
    for _ in range(2):
        assert client.get(f"/api/explain?query={first}&hit={second}").status_code == 200
    after = scrape(client)
    assert after[("whysim_explanation_cache_misses_total", ())] - before[("whysim_explanation_cache_misses_total", ())] == 1
    assert after[("whysim_explanation_cache_hits_total", ())] - before[("whysim_explanation_cache_hits_total", ())] == 1
    assert after[("whysim_index_vectors", ())] == 11 and after[("whysim_index_ready", ())] == 1
    assert after[("whysim_model_queue_depth", ())] == 0 and after[("whysim_model_queue_size", ())] == 8
    assert after[("whysim_index_generation_timestamp_seconds", ())] > 1e9


def test_one_logfmt_access_line_per_request(client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        client.get("/api/explain?query=1", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    [line] = [record.getMessage() for record in caplog.records if record.name == LOGGER_NAME]
    fields = parse_logfmt(line)
    assert fields["method"] == "GET" and fields["route"] == "/api/explain" and fields["path"] == "/api/explain"
    assert fields["status"] == "400" and fields["client"] == "192.0.2.9"
    assert float(fields["duration_ms"]) >= 0


def test_logfmt_quotes_what_needs_it() -> None:
    line = logfmt(path='/a b"c', plain="x", empty="")
    assert line == 'path="/a b\\"c" plain=x empty=""'
    assert parse_logfmt(line) == {"path": '/a b"c', "plain": "x", "empty": ""}


@ANY_CATALOG
def test_metrics_port_serves_them_apart_from_the_public_port(built_index) -> None:
    port = free_port()
    with whysim_server(built_index.root, "--metrics-port", str(port)) as server:
        server.get_json("/api/stats")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            found = samples(response.read().decode())
        assert requests_to(found, "/api/stats") >= 1 and found[("whysim_index_vectors", ())] == 11
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.base_url}/metrics", timeout=30)
        assert refused.value.code == 404
        assert "method=GET route=/api/stats" in server.log()
