"""A throwaway Milvus standalone server for the tests, from the `milvus` package (embedded Milvus).

The package bundles the server binary; it runs with its etcd, message queue and segments in a
temporary directory, every configurable port a free loopback port chosen here, and is stopped
and deleted at the end. Its embedded etcd binds 2379 and 2380 whatever the configuration, so one
such server runs on a machine at a time: under pytest-xdist the controller runs it for both
workers (`SharedMilvusServer`), otherwise the test process does (`MilvusServerLease`). Either way
it is stopped once the tests that need it are done: while it runs it takes CPU from every other
test. Each test gets collections of its own (`collection_name`), dropped after it.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.http_load import free_port

# Starting takes ~10 s; a machine that cannot run the binary fails long before this.
START_TIMEOUT_MS = 120_000
# The bundled server's embedded etcd listens on these whatever its configuration says, so one
# such server runs on a machine at a time; a second one panics at start.
EMBEDDED_ETCD_PORTS = (2379, 2380)
PORTS_WAIT_S = 30  # a server just stopped takes a few seconds to let them go
# Settings of the packaged config changed for a test server that holds a few hundred vectors:
# a strongly consistent read waits for the next time tick, and loading a collection for the
# query coordinator's next checks, so shorter intervals make each such call ~10x cheaper; a
# flush waits for the segment's row assignments to expire (2 s, so 2.5 s a flush; 0.5 s here).
FAST_SETTINGS = {
    "timeTickInterval: 200": "timeTickInterval: 20",
    "checkInterval: 1000": "checkInterval: 100",
    "distPullInterval: 500": "distPullInterval: 50",
    "assignmentExpiration: 2000": "assignmentExpiration: 200",
    "queryCoord:\n": "queryCoord:\n  checkChannelInterval: 100\n",
}


class MilvusServerUnavailable(RuntimeError):
    """The `milvus` package is missing, or its server would not start here."""


@dataclass
class MilvusTestServer:
    port: int
    server: Any = None  # milvus.MilvusServer
    root: Path | None = None
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _made: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def collection_name(self, prefix: str = "t") -> str:
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._made.append(name)
        return name

    def drop_collections(self) -> None:
        """Drops every collection named here so far (with its generations and alias): the
        server's idle work grows with each loaded collection, as each one's channel takes every
        time tick (tests/benchmarks/bench_milvus_idle.py)."""
        if not self._made:
            return
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri)
        try:
            made = re.compile("(?:" + "|".join(map(re.escape, self._made)) + r")(?:_g\d+)?")
            for name in client.list_collections():
                if made.fullmatch(name):
                    for alias in client.describe_collection(name).get("aliases", []):
                        client.drop_alias(alias)
                    client.drop_collection(name)
        finally:
            client.close()
        self._made.clear()

    def vector_store(self, prefix: str = "t") -> str:
        """A --vector-store value naming a new collection on this server."""
        return f"milvus://127.0.0.1:{self.port}/{self.collection_name(prefix)}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def start_milvus_server(attempts: int = 2, settings: dict[str, str] | None = None) -> MilvusTestServer:
    """A started server; a failed start is tried once more with new ports and a new directory (a
    free port chosen here can be taken by another process before the server binds it).
    `settings`: more replacements in the packaged config, applied after FAST_SETTINGS."""
    try:
        from milvus import MilvusServer
    except ImportError as exc:
        raise MilvusServerUnavailable("the `milvus` package (embedded Milvus server) is not installed: "
                                      "pip install 'whysim[milvus-server]'") from exc
    failures = []
    for _ in range(attempts):
        wait_for_etcd_ports()  # not retried: a second try would meet the same server
        try:
            return _start_once(MilvusServer, {**FAST_SETTINGS, **(settings or {})})
        except MilvusServerUnavailable as exc:
            failures.append(str(exc))
    raise MilvusServerUnavailable(" | then: ".join(failures))


class MilvusServerLease:
    """The server of a test process without workers: started when a test first asks for it,
    stopped by the caller when the tests that need it are done. A server that cannot start here
    is not tried again: each test that needs it is told why."""

    def __init__(self) -> None:
        self._server: MilvusTestServer | None = None
        self._unavailable: str | None = None

    def get(self) -> MilvusTestServer:
        if self._unavailable is not None:
            raise MilvusServerUnavailable(self._unavailable)
        if self._server is None:
            try:
                self._server = start_milvus_server()
            except MilvusServerUnavailable as exc:
                self._unavailable = str(exc)
                raise
        return self._server

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_for_etcd_ports() -> None:
    deadline = time.monotonic() + PORTS_WAIT_S
    while taken := [port for port in EMBEDDED_ETCD_PORTS if port_taken(port)]:
        if time.monotonic() > deadline:
            raise MilvusServerUnavailable(f"port {', '.join(map(str, taken))} is taken (the bundled server's embedded "
                                          "etcd needs 2379 and 2380): is another Milvus server running on this machine?")
        time.sleep(0.5)


def _start_once(server_class: Any, settings: dict[str, str]) -> MilvusTestServer:
    root = Path(tempfile.mkdtemp(prefix="whysim-milvus-"))
    config_ports = {key: free_port() for key in ("etcd_port", "root_coord_port", "proxy_port", "proxy_internal_port",
                                                 "query_coord_port", "query_node_port", "index_coord_port",
                                                 "index_node_port", "data_coord_port", "data_node_port")}
    server = server_class(wait_for_started=False, **config_ports)
    for packaged, fast in settings.items():
        server.config.template_text = server.config.template_text.replace(packaged, fast)
    server.set_base_dir(str(root))
    server.webservice_port = free_port()  # health checks and metrics; the package scans upwards from here
    try:
        server.start()
        server.wait_started(timeout=START_TIMEOUT_MS)
    except Exception as exc:  # noqa: BLE001 - a missing library, a refused port, a crash: all say "cannot run here"
        log = root / "logs" / "milvus-stderr.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        # A Go panic says why in its first lines; the end of the log is its stack.
        raise MilvusServerUnavailable(f"the bundled Milvus server did not start: {exc} {text[:1200]}".strip()) from exc
    return MilvusTestServer(int(server.listen_port), server, root)


class SharedMilvusServer:
    """The server of an xdist run, in the controller, shared with the workers through files in
    `folder`: the controller starts it in the background while the workers start and collect, and
    writes STATUS (its port, or why it could not start); a worker writes NEEDED (the ids of the
    tests that need it, the same in every worker); the controller stops it once each of those has
    finished (`finished`)."""

    STATUS = "status.json"
    NEEDED = "needed.json"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._server: MilvusTestServer | None = None
        self._needed: set[str] | None = None
        self._starting = threading.Thread(target=self._start, name="milvus-test-server", daemon=True)
        self._starting.start()

    def _start(self) -> None:
        try:
            self._server = start_milvus_server()
            status: dict[str, Any] = {"port": self._server.port}
        except MilvusServerUnavailable as exc:
            status = {"unavailable": str(exc)}
        write_atomically(self.folder / self.STATUS, json.dumps(status))

    def finished(self, nodeid: str) -> None:
        """A test has finished (teardown included); the last one that needs the server stops it."""
        if self._needed is None:
            needed = self.folder / self.NEEDED
            if not needed.exists():
                return  # no worker has collected yet
            self._needed = set(json.loads(needed.read_text()))
        self._needed.discard(nodeid)
        if not self._needed:
            self.stop()

    def stop(self) -> None:
        self._starting.join()
        server, self._server = self._server, None
        if server is not None:
            server.stop()


def note_needed(folder: Path, nodeids: list[str]) -> None:
    """A worker's part: which of its collected tests need the server."""
    write_atomically(folder / SharedMilvusServer.NEEDED, json.dumps(nodeids))


@functools.cache
def shared_server(folder: Path) -> MilvusTestServer:
    """A worker's part: the controller's server, once started (MilvusServerUnavailable: why not).
    One object per worker, so the collection names it hands out never repeat."""
    status = folder / SharedMilvusServer.STATUS
    deadline = time.monotonic() + 2 * (PORTS_WAIT_S + START_TIMEOUT_MS / 1000)
    while not status.exists():
        if time.monotonic() > deadline:
            raise MilvusServerUnavailable("the controller's Milvus server neither started nor failed in time")
        time.sleep(0.1)
    started = json.loads(status.read_text())
    if "unavailable" in started:
        raise MilvusServerUnavailable(started["unavailable"])
    return MilvusTestServer(int(started["port"]))


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)
