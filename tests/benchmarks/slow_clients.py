"""Slow and idle connections from one client address, and raw HTTP requests from another, for
tests/search_layer/test_slow_clients.py and bench_slow_clients.py."""
from __future__ import annotations

import socket
import time
from types import TracebackType

PARTIAL_REQUEST = b"GET /api/health HTTP/1.1\r\nX-Slow: "  # the headers never end: one byte is added per trickle
SETTLE_S = 1.0  # after opening, what the server refused is closed by then


def is_open(connection: socket.socket) -> bool:
    """Whether the server still holds this connection (nothing to read, no end of stream)."""
    connection.setblocking(False)
    try:
        connection.recv(1, socket.MSG_PEEK)  # data (a 503) or the end of the stream: the server is done with it
    except BlockingIOError:
        return True
    except OSError:
        pass
    return False


class SlowClients:
    """`count` connections from `source`, each sending a request whose headers never end."""

    def __init__(self, port: int, count: int, source: str) -> None:
        self.port = port
        self.count = count
        self.source = source
        self.connections: list[socket.socket] = []
        self.refused = 0  # closed by the server before the header deadline: refused over the cap

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            try:
                connection = socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                                      source_address=(self.source, 0))
                connection.sendall(PARTIAL_REQUEST)
            except OSError:
                self.refused += 1
                continue
            self.connections.append(connection)
        time.sleep(SETTLE_S)
        alive = [connection for connection in self.connections if is_open(connection)]
        self.refused += len(self.connections) - len(alive)
        for connection in set(self.connections) - set(alive):
            connection.close()
        self.connections = alive
        return self

    def trickle(self) -> None:
        """One more header byte on every connection still open."""
        for connection in self.connections:
            try:
                connection.send(b"x")
            except OSError:
                pass

    def open_count(self) -> int:
        return sum(is_open(connection) for connection in self.connections)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for connection in self.connections:
            connection.close()


def raw_request(port: int, method: str, path: str, body: bytes = b"", source: str | None = None,
                extra: bytes = b"", declared_length: int | None = None, chunked_garbage: bool = False,
                timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection (`Connection: close`); returns status, headers (lower-case
    names) and body. `declared_length` announces a body that is never sent."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode() + extra
    if chunked_garbage:
        head += b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
    else:
        length = len(body) if declared_length is None else declared_length
        head += f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as connection:
        connection.sendall(head)
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break  # the server closed with our surplus bytes unread; what it sent before is kept
            if not chunk:
                break
            received += chunk
    header_block, _, payload = received.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload
