"""Locust users for the load benchmarks (tests/benchmarks/bench_load.py) and the suite's short
load tests. Run by the `locust` CLI in its own process (Locust monkey-patches with gevent):

    locust -f tests/benchmarks/locustfile.py --headless --host http://127.0.0.1:PORT -u 8 -r 8 -t 60s \
        --workload WORKLOAD.json --max-requests 100000 --csv bench-results/mixed MixedUser

WORKLOAD.json: {"image_ids": [...indexed ids...], "upload_files": [...image paths...], "k": 10}.
Every upload is a distinct file (a random crop of one of the images, re-encoded), so each one
is really decoded and embedded. Each user sends its own X-Forwarded-For address, so that a
server started with --trusted-proxies 1 tells the users apart as it would real clients.
Every non-200 answer, and every 200 whose body is wrong, is a failure (429s of the flooder too,
which the benchmark counts separately).
"""
from __future__ import annotations

import io
import itertools
import json
import random
import uuid
from typing import Any

import gevent
from locust import HttpUser, constant, events, task
from PIL import Image

_addresses = itertools.count(1)
_state: dict[str, Any] = {}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--workload", default="", help="JSON file: image_ids, upload_files, k")
    parser.add_argument("--max-requests", type=int, default=0, help="stop after this many requests (0: no cap)")


@events.test_start.add_listener
def _load_workload(environment: Any, **_: Any) -> None:
    workload = json.loads(open(environment.parsed_options.workload).read())
    _state["ids"] = list(workload["image_ids"])
    _state["k"] = int(workload.get("k", 10))
    _state["pictures"] = [Image.open(path).convert("RGB") for path in workload.get("upload_files", [])]
    _state["requests"] = 0


@events.request.add_listener
def _cap_requests(**_: Any) -> None:
    _state["requests"] = _state.get("requests", 0) + 1
    cap = _state.get("cap")
    if cap and _state["requests"] == cap and _state.get("runner") is not None:
        gevent.spawn(_state["runner"].quit)  # not from inside the user's own greenlet


@events.init.add_listener
def _remember_runner(environment: Any, **_: Any) -> None:
    _state["runner"] = environment.runner
    _state["cap"] = environment.parsed_options.max_requests if environment.parsed_options else 0


def distinct_upload(rng: random.Random) -> bytes:
    picture = rng.choice(_state["pictures"])
    width, height = picture.size
    left, top = rng.randrange(0, max(1, width // 10)), rng.randrange(0, max(1, height // 10))
    buffer = io.BytesIO()
    picture.crop((left, top, width - rng.randrange(0, max(1, width // 10)), height)).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


class WhysimUser(HttpUser):
    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        number = next(_addresses)
        self.client.headers["X-Forwarded-For"] = f"10.{number // 250}.{number % 250}.1"
        self.rng = random.Random(number)

    def check(self, response: Any, valid: Any) -> None:
        if response.status_code != 200:
            response.failure(f"HTTP {response.status_code}")
            return
        try:
            problem = valid(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"unreadable answer: {exc}"
        if problem:
            response.failure(problem)

    def search_by_id(self) -> None:
        image_id = self.rng.choice(_state["ids"])
        with self.client.post("/api/search", json={"image_id": image_id, "k": _state["k"]}, name="search by id",
                              catch_response=True) as response:
            self.check(response, lambda body: "the query among its hits" if image_id in
                       [hit["id"] for hit in body["hits"]] else None)

    def search_by_upload(self) -> None:
        files = {"image": (f"{uuid.uuid4().hex}.jpg", distinct_upload(self.rng), "image/jpeg")}
        with self.client.post("/api/search", files=files, data={"k": str(_state["k"])}, name="search by upload",
                              catch_response=True) as response:
            self.check(response, lambda body: None if body["query"]["kind"] == "upload" and body["hits"]
                       else "no hits for an upload")

    def explain(self, name: str = "explain") -> None:
        query, hit = self.rng.sample(_state["ids"], 2)
        with self.client.get(f"/api/explain?query={query}&hit={hit}", name=name, catch_response=True) as response:
            self.check(response, lambda body: None if body["verdict"] in ("similar", "dissimilar")
                       and body["hit"]["id"] == hit else "a wrong explanation")


class MixedUser(WhysimUser):
    """Search by id, search by upload and explanations of random pairs, one third each."""

    @task
    def by_id(self) -> None:
        self.search_by_id()

    @task
    def by_upload(self) -> None:
        self.search_by_upload()

    @task
    def explanation(self) -> None:
        self.explain()


class Searcher(WhysimUser):
    """Only searches by id, one after another."""

    @task
    def by_id(self) -> None:
        self.search_by_id()


class Flooder(WhysimUser):
    """Asks for explanations of random pairs as fast as the server answers, 429s included.
    Always exactly one, whatever the number of users."""

    fixed_count = 1

    @task
    def flood(self) -> None:
        self.explain("flood explain")
