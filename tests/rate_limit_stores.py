"""Throwaway stores for the shared rate-limit windows, from Debian's packages: redis-server and
memcached, each on a free loopback port, keeping nothing on disk, stopped at the end."""
from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from benchmarks.http_load import free_port

START_TIMEOUT_S = 20


class StoreUnavailable(RuntimeError):
    """The store's server is not installed, or would not start."""


def _answers_redis(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port).ping())
    except redis.ConnectionError:
        return False


def _answers_memcached(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"version\r\n")
            return connection.recv(64).startswith(b"VERSION")
    except OSError:
        return False


@contextmanager
def _serving(binary_name: str, package: str, arguments: Callable[[int, Path], list[str]],
             answers: Callable[[int], bool]) -> Iterator[int]:
    """Starts `binary_name` with `arguments(port, directory)`; yields the port once it answers."""
    binary = shutil.which(binary_name)
    if binary is None:
        raise StoreUnavailable(f"{binary_name} is not installed (Debian package {package}; `make test` installs it)")
    root = Path(tempfile.mkdtemp(prefix=f"whysim-{binary_name}-"))
    port = free_port()
    process = subprocess.Popen([binary, *arguments(port, root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise StoreUnavailable(f"{binary_name} did not start: {process.stderr.read()!r}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_redis() -> Iterator[str]:
    """Yields the server's redis:// URI."""
    with _serving("redis-server", "redis-server",
                  lambda port, root: ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(root),
                                      "--save", "", "--appendonly", "no"],
                  _answers_redis) as port:
        yield f"redis://127.0.0.1:{port}"


@contextmanager
def running_memcached() -> Iterator[str]:
    """Yields the server's memcached:// URI (memcached keeps everything in memory anyway)."""
    with _serving("memcached", "memcached",
                  lambda port, root: ["--port", str(port), "--listen", "127.0.0.1", "--udp-port", "0",
                                      "--memory-limit", "16", "--user", getpass.getuser()],  # as root, it asks
                  _answers_memcached) as port:
        yield f"memcached://127.0.0.1:{port}"


STORES: dict[str, Callable[[], AbstractContextManager[str]]] = {"redis": running_redis, "memcached": running_memcached}
