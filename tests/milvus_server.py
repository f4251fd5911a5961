"""A throwaway Milvus standalone server for the tests, from the `milvus` package (embedded Milvus).

The package bundles the server binary; it runs with its etcd, message queue and segments in a
temporary directory, every configurable port a free loopback port chosen here, and is stopped
and deleted at the end. Its embedded etcd binds 2379 and 2380 whatever the configuration, so one
such server runs on a machine at a time (tests/conftest.py shares it between xdist workers). Each test gets collections
of its own (`collection_name`), so nothing needs resetting between tests.
"""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
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
# query coordinator's next check, so shorter intervals make each such call ~10x cheaper.
FAST_SETTINGS = {
    "timeTickInterval: 200": "timeTickInterval: 20",
    "checkInterval: 1000": "checkInterval: 100",
    "distPullInterval: 500": "distPullInterval: 50",
}


class MilvusServerUnavailable(RuntimeError):
    """The `milvus` package is missing, or its server would not start here."""


@dataclass
class MilvusTestServer:
    port: int
    server: Any = None  # milvus.MilvusServer, when this process started it (None: another process's)
    root: Path | None = None
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def collection_name(self, prefix: str = "t") -> str:
        return f"{prefix}_{os.getpid()}_{next(self._names)}"

    def vector_store(self, prefix: str = "t") -> str:
        """A --vector-store value naming a new collection on this server."""
        return f"milvus://127.0.0.1:{self.port}/{self.collection_name(prefix)}"

    def stop(self) -> None:
        """Stops the server this process started; a server another process started is left to it."""
        if self.server is not None:
            self.server.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def start_milvus_server(attempts: int = 2) -> MilvusTestServer:
    """A started server; a failed start is tried once more with new ports and a new directory (a
    free port chosen here can be taken by another process before the server binds it)."""
    try:
        from milvus import MilvusServer
    except ImportError as exc:
        raise MilvusServerUnavailable("the `milvus` package (embedded Milvus server) is not installed: "
                                      "pip install 'whysim[milvus-server]'") from exc
    failures = []
    for _ in range(attempts):
        try:
            return _start_once(MilvusServer)
        except MilvusServerUnavailable as exc:
            failures.append(str(exc))
    raise MilvusServerUnavailable(" | then: ".join(failures))


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


def _start_once(server_class: Any) -> MilvusTestServer:
    wait_for_etcd_ports()
    root = Path(tempfile.mkdtemp(prefix="whysim-milvus-"))
    config_ports = {key: free_port() for key in ("etcd_port", "root_coord_port", "proxy_port", "proxy_internal_port",
                                                 "query_coord_port", "query_node_port", "index_coord_port",
                                                 "index_node_port", "data_coord_port", "data_node_port")}
    server = server_class(wait_for_started=False, **config_ports)
    for packaged, fast in FAST_SETTINGS.items():
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
