"""A throwaway Redis server for the tests (Debian's redis-server): a free loopback port, its
directory in a temporary folder, nothing saved to disk, stopped at the end."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.http_load import free_port

REDIS_SERVER = "redis-server"


class RedisUnavailable(RuntimeError):
    """redis-server is not installed, or would not start."""


@contextmanager
def running_redis() -> Iterator[str]:
    """Yields the server's redis:// URI."""
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        raise RedisUnavailable("redis-server is not installed (Debian package redis-server; `make test` installs it)")
    root = Path(tempfile.mkdtemp(prefix="whysim-redis-"))
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root),
                                "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RedisUnavailable(f"redis-server did not start: {process.stderr.read()!r}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
