"""A throwaway Milvus standalone server for the tests, from the `milvus` package (embedded Milvus).

The package bundles the server binary; it runs with its etcd, message queue and segments in a
temporary directory, every port a free loopback port chosen here (so that test runs beside
each other never meet), and is stopped and deleted at the end. Each test gets collections
of its own (`collection_name`), so nothing needs resetting between tests.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.http_load import free_port

# Starting takes ~10 s; a machine that cannot run the binary fails long before this.
START_TIMEOUT_MS = 120_000
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
    server: Any  # milvus.MilvusServer
    root: Path
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def port(self) -> int:
        return int(self.server.listen_port)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def collection_name(self, prefix: str = "t") -> str:
        return f"{prefix}_{os.getpid()}_{next(self._names)}"

    def vector_store(self, prefix: str = "t") -> str:
        """A --vector-store value naming a new collection on this server."""
        return f"milvus://127.0.0.1:{self.port}/{self.collection_name(prefix)}"

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_milvus_server() -> MilvusTestServer:
    try:
        from milvus import MilvusServer
    except ImportError as exc:
        raise MilvusServerUnavailable("the `milvus` package (embedded Milvus server) is not installed: "
                                      "pip install 'whysim[milvus-server]'") from exc
    root = Path(tempfile.mkdtemp(prefix="whysim-milvus-"))
    config_ports = {key: free_port() for key in ("etcd_port", "root_coord_port", "proxy_port", "proxy_internal_port",
                                                 "query_coord_port", "query_node_port", "index_coord_port",
                                                 "index_node_port", "data_coord_port", "data_node_port")}
    server = MilvusServer(wait_for_started=False, **config_ports)
    for packaged, fast in FAST_SETTINGS.items():
        server.config.template_text = server.config.template_text.replace(packaged, fast)
    server.set_base_dir(str(root))
    server.webservice_port = free_port()  # health checks and metrics; the package scans upwards from here
    try:
        server.start()
        server.wait_started(timeout=START_TIMEOUT_MS)
    except Exception as exc:  # noqa: BLE001 - a missing library, a refused port, a crash: all say "cannot run here"
        log = root / "logs" / "milvus-stderr.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise MilvusServerUnavailable(f"the bundled Milvus server did not start: {exc} {tail}".strip()) from exc
    return MilvusTestServer(server, root)
