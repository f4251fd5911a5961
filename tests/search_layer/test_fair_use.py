"""Fair sharing: per-client rate limits on uploads, explanations and overlays (429 + Retry-After),
never reached by the page's own request pattern, and a bounded queue in front of the model (503)."""
from __future__ import annotations

import io
import itertools
import threading

import pytest
from conftest import encode, make_picture
from limits import parse
from rate_limit_stores import STORES, StoreUnavailable
from whysim_cli import whysim

from search_layer.collection import PICTURE_SIZE
from search_layer.conftest import ANY_CATALOG
from whysim.search.api.routes import services
from whysim.search.api.settings import ApiSettings
from whysim.webui.commands import loopback_only

TOKEN = "correct-horse-battery-staple-42"


def limited_app(make_app, built_index, **config):
    return make_app(built_index, WHYSIM_RATE_LIMITS=True, **config)


def client_at(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def upload(client, seed: int):
    return client.post("/api/search", data={"image": (io.BytesIO(encode(make_picture(seed, PICTURE_SIZE))), "q.jpg")})


def open_explanation(client, hit: dict) -> list[int]:
    """What the page's explanation dialog loads: the explanation, both images, four heatmaps."""
    body = client.get(hit["explain_url"])
    statuses = [body.status_code]
    for side in ("query", "hit"):
        statuses.append(client.get(body.json[side]["image_url"]).status_code)
        for kind in ("factual", "counterfactual"):
            statuses.append(client.get(body.json[side][f"{kind}_url"] + "&style=heatmap").status_code)
    return statuses


@ANY_CATALOG
def test_the_pages_request_pattern_never_meets_the_default_limits(make_app, built_index) -> None:
    client = client_at(limited_app(make_app, built_index), "10.1.0.1")
    for seed in (301, 302):  # two uploads, each followed by opening every hit's explanation
        found = upload(client, seed)
        assert found.status_code == 200
        statuses = [status for hit in found.json["hits"] for status in open_explanation(client, hit)]
        assert len(statuses) == 7 * len(found.json["hits"]) == 70
        assert set(statuses) == {200}, statuses


@ANY_CATALOG
def test_a_client_flooding_explanations_gets_429_and_the_others_do_not(make_app, built_index, images) -> None:
    app = limited_app(make_app, built_index, WHYSIM_EXPLAIN_RATE_LIMIT="3/minute", WHYSIM_ADMIN_TOKEN=TOKEN)
    flooder, other = client_at(app, "10.2.0.1"), client_at(app, "10.2.0.2")
    first, second = images["blobs/blobs_001.jpg"].id, images["stripes/stripes_001.jpg"].id
    answers = [flooder.get(f"/api/explain?query={first}&hit={second}") for _ in range(6)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429, 429, 429]
    refused = answers[-1]
    assert refused.is_json and "too many explanations from this client" in refused.json["error"]
    assert set(refused.json) == {"error"}
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert flooder.post("/api/search", json={"image_id": first}).status_code == 200  # cheap routes stay open
    assert flooder.get(f"/api/images/{first}/thumbnail").status_code == 200
    assert other.get(f"/api/explain?query={first}&hit={second}").status_code == 200
    admin = flooder.get(f"/api/explain?query={first}&hit={second}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert admin.status_code == 200  # admin-token clients are exempt


@ANY_CATALOG
def test_only_uploads_count_against_the_upload_limit(make_app, built_index, images) -> None:
    client = client_at(limited_app(make_app, built_index, WHYSIM_UPLOAD_RATE_LIMIT="1/minute"), "10.3.0.1")
    assert upload(client, 311).status_code == 200
    refused = upload(client, 312)
    assert refused.status_code == 429 and "too many uploads" in refused.json["error"]
    assert client.post("/api/search", json={"image_id": images["blobs/blobs_002.jpg"].id}).status_code == 200


@ANY_CATALOG
def test_behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for(make_app, built_index, images) -> None:
    app = limited_app(make_app, built_index, WHYSIM_EXPLAIN_RATE_LIMIT="1/minute", WHYSIM_TRUSTED_PROXIES=1)
    proxy = client_at(app, "127.0.0.1")
    url = f"/api/explain?query={images['blobs/blobs_001.jpg'].id}&hit={images['blobs/blobs_002.jpg'].id}"
    assert proxy.get(url, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert proxy.get(url, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 429
    assert proxy.get(url, headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 200


@ANY_CATALOG
def test_unreadable_limits_are_refused_at_startup(make_app, built_index) -> None:
    with pytest.raises(ValueError, match="explain rate limit 'lots' is not a limit"):
        limited_app(make_app, built_index, WHYSIM_EXPLAIN_RATE_LIMIT="lots")


@ANY_CATALOG
def test_an_unknown_rate_limit_storage_is_refused_at_startup(make_app, built_index) -> None:
    with pytest.raises(ValueError, match="rate limit storage 'redis:/localhost' is not a storage URI; use one of"):
        limited_app(make_app, built_index, WHYSIM_RATE_LIMIT_STORAGE="redis:/localhost")


SHARED_STORE_CLIENTS = itertools.count(1)


@pytest.fixture(scope="module", params=sorted(STORES))
def shared_storage(request: pytest.FixtureRequest):
    """A store several servers can share: Redis, Memcached (Debian's servers, `make test` installs them)."""
    try:
        with STORES[request.param]() as uri:
            yield uri
    except StoreUnavailable as exc:
        pytest.skip(f"no {request.param} server for the shared rate limits: {exc}")


@ANY_CATALOG
def test_servers_sharing_a_storage_allow_a_client_the_rate_once(make_app, built_index, images, shared_storage) -> None:
    """Two servers behind one load balancer: with memory:// each allows the full rate; with one
    shared store both count the same window."""
    url = f"/api/explain?query={images['blobs/blobs_004.jpg'].id}&hit={images['stripes/stripes_004.jpg'].id}"
    statuses = {}
    address = f"10.9.0.{next(SHARED_STORE_CLIENTS)}"  # not counted yet by the store, which outlives one run
    for storage in ("memory://", shared_storage):
        servers = [limited_app(make_app, built_index, WHYSIM_EXPLAIN_RATE_LIMIT="2/minute",
                               WHYSIM_RATE_LIMIT_STORAGE=storage) for _ in range(2)]
        clients = [client_at(server, address) for server in servers]
        statuses[storage] = [clients[turn % 2].get(url).status_code for turn in range(4)]
    assert statuses["memory://"] == [200, 200, 200, 200]  # 2 a minute on each server
    assert statuses[shared_storage] == [200, 200, 429, 429]  # 2 a minute in all


def test_whysim_serve_hands_its_rate_limit_storage_to_the_server(built_index) -> None:
    refused = whysim("serve", "--data-dir", built_index.root, "--rate-limit-storage", "redis:/localhost",
                     exit_code=1)
    assert "rate limit storage 'redis:/localhost' is not a storage URI" in refused.output


@ANY_CATALOG
def test_a_full_model_queue_is_503_with_retry_after(make_app, built_index, images) -> None:
    app = make_app(built_index, WHYSIM_MODEL_QUEUE_SIZE=1)
    client = app.test_client()
    url = f"/api/explain?query={images['blobs/blobs_003.jpg'].id}&hit={images['stripes/stripes_003.jpg'].id}"
    with app.app_context():
        models = services().engine.models
    release, started = threading.Event(), threading.Event()
    holder = threading.Thread(target=models.run, args=(lambda: (started.set(), release.wait(30)),))
    holder.start()
    try:
        assert started.wait(30)
        assert models.queue_depth == 1
        busy = client.get(url)
        assert busy.status_code == 503 and "the model is busy" in busy.json["error"]
        assert int(busy.headers["Retry-After"]) >= 1
    finally:
        release.set()
        holder.join()
    assert models.queue_depth == 0
    assert client.get(url).status_code == 200


@ANY_CATALOG
def test_a_loopback_only_server_defaults_to_limits_one_person_never_meets(make_app, built_index) -> None:
    assert loopback_only("127.0.0.1", 0) and loopback_only("::1", 0) and loopback_only("localhost", 0)
    assert not loopback_only("0.0.0.0", 0) and not loopback_only("192.168.1.5", 0)
    assert not loopback_only("127.0.0.1", 1)  # behind a proxy, other people reach it
    local = ApiSettings().for_loopback()
    app = limited_app(make_app, built_index, WHYSIM_UPLOAD_RATE_LIMIT=local.upload_rate_limit)
    client = client_at(app, "127.0.0.1")
    default = parse(ApiSettings.upload_rate_limit).amount  # what a server others reach allows per minute
    statuses = [upload(client, 303 + index % 3).status_code for index in range(default + 5)]
    assert set(statuses) == {200}
