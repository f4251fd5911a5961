"""waitress, guarded against clients that hold connections: deadlines and a cap per address.

waitress alone closes a connection only after `channel_timeout` seconds *without any byte*, and
stops accepting altogether once `connection_limit` connections are open. One process holding 100
connections, each sending a header byte now and then, made the server unreachable for everyone
(issue 23). Measured with tests/benchmarks/bench_slow_clients.py, its settings are not enough:
a shorter channel_timeout still lets a trickle of bytes hold a connection forever, and nothing
in waitress tells one client from another. So this module subclasses its server and channel:

- a request must arrive whole in bounded time: its headers within `header_timeout_s` of its
  first byte (or of the connection opening), its body within `request_timeout_s`;
- one client address holds at most `per_client` connections; more are answered 503 and closed
  at once (its own idle keep-alive connections are closed first, to make room);
- when all connections together near `limit`, idle keep-alive ones are closed, oldest first,
  so that the server keeps accepting;
- errors that waitress answers itself (413 over its body limit, 431, a bad chunk) are JSON with
  the same security headers as the app's answers.

Behind a reverse proxy every connection comes from the proxy, so the per-address cap is then
off (`per_client=0`) and the proxy limits clients (docs/serving.md has nginx and Caddy configs).
"""
from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from whysim.webui.security import SECURITY_HEADERS

NEAR_LIMIT = 0.9  # share of the connection limit at which idle keep-alive connections are closed
AFTER_TRIM = 0.75  # ... down to this share
RETRY_AFTER_S = 5
REFUSAL_LOG_INTERVAL_S = 60.0
RECV_BYTES = 65536

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionPolicy:
    limit: int = 400  # open connections in all; waitress stops accepting beyond
    per_client: int = 32  # open connections of one client address; 0: no cap (behind a proxy)
    header_timeout_s: float = 10.0  # from a request's first byte (or the connection opening) to its last header
    request_timeout_s: float = 120.0  # ... to the last byte of its body
    idle_timeout_s: float = 30.0  # a keep-alive connection with no request
    check_interval_s: int = 1  # how often deadlines are checked


def security_headers() -> list[tuple[str, str]]:
    return [*SECURITY_HEADERS.items(), ("Cross-Origin-Resource-Policy", "same-origin")]


class JsonErrorTask(ErrorTask):
    """waitress's own error answers, as JSON with the app's security headers."""

    def execute(self) -> None:
        error = self.request.error
        self.status = f"{error.code} {error.reason}"
        body = json.dumps({"error": f"{error.reason.lower()}: {error.body}"}).encode()
        self.response_headers.extend([("Content-Type", "application/json"), *security_headers()])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class GuardedChannel(HTTPChannel):  # type: ignore[misc]
    error_task_class = JsonErrorTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_since = self.creation_time  # first byte of the request being received, or when idle began

    def received(self, data: bytes) -> bool:
        before = self.request
        result: bool = super().received(data)
        if self.request is not None and self.request is not before:
            self.waiting_since = time.time()
        return result

    @property
    def idle(self) -> bool:
        """Nothing being received, served or sent: a keep-alive connection waiting for a request."""
        return self.request is None and not self.requests and not self.total_outbufs_len

    def overdue(self, now: float, policy: ConnectionPolicy) -> bool:
        """A request still arriving after its deadline (or a new connection that sent nothing)."""
        if self.requests or self.will_close:
            return False
        if self.request is None:
            never_used = self.last_activity == self.creation_time
            return never_used and now - self.creation_time > policy.header_timeout_s
        limit = policy.request_timeout_s if self.request.headers_finished else policy.header_timeout_s
        return now - self.waiting_since > limit


def refusal(status: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close"),
               ("Retry-After", str(RETRY_AFTER_S)), *security_headers()]
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    return head.encode("latin-1") + body


class GuardedServer(TcpWSGIServer):  # type: ignore[misc]
    channel_class = GuardedChannel

    def __init__(self, application: Any, adj: Adjustments, policy: ConnectionPolicy) -> None:
        self.policy = policy
        self.refusals_logged: dict[str, float] = {}
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        super().__init__(application, {}, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])

    def channels(self) -> list[GuardedChannel]:
        return list(self.active_channels.values())

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        conn, addr = accepted
        if len(self.active_channels) >= NEAR_LIMIT * self.policy.limit:
            self.close_idle(int(AFTER_TRIM * self.policy.limit))
        host = addr[0] if isinstance(addr, tuple) else str(addr)
        if self.policy.per_client and not self.make_room_for(host):
            self.refuse(conn, host)
            return
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)

    def make_room_for(self, host: str) -> bool:
        """Whether `host` may open one more connection, after closing its own idle ones if needed."""
        own = [channel for channel in self.channels() if channel.addr[0] == host and not channel.will_close]
        excess = len(own) + 1 - self.policy.per_client
        if excess <= 0:
            return True
        idle = sorted((channel for channel in own if channel.idle), key=lambda channel: channel.last_activity)
        for channel in idle[:excess]:
            channel.handle_close()
        return len(idle) >= excess

    def refuse(self, conn: socket.socket, host: str) -> None:
        now = time.monotonic()
        if now - self.refusals_logged.get(host, -REFUSAL_LOG_INTERVAL_S) >= REFUSAL_LOG_INTERVAL_S:
            self.refusals_logged[host] = now
            logger.warning("refusing connections from %s: it already holds %d (logged once a minute)", host,
                           self.policy.per_client)
        try:
            conn.setblocking(False)
            conn.recv(RECV_BYTES)  # what already arrived: closing with it unread would reset the connection
        except OSError:
            pass
        try:
            conn.send(refusal("503 Service Unavailable", f"too many connections from this client ({host}); "
                                                         f"at most {self.policy.per_client} at once"))
        except OSError:
            pass  # the client is gone or not reading: closing is all that is left
        finally:
            conn.close()

    def close_idle(self, keep: int) -> None:
        """Closes idle keep-alive connections, least recently used first, until `keep` remain."""
        idle = sorted((channel for channel in self.channels() if channel.idle), key=lambda channel: channel.last_activity)
        for channel in idle[:max(0, len(self.active_channels) - keep)]:
            channel.handle_close()

    def maintenance(self, now: float) -> None:
        """Closes requests past their deadline and keep-alive connections idle too long (runs every
        `check_interval_s` on the server's loop, the only thread that touches the channels)."""
        for channel in self.channels():
            if channel.overdue(now, self.policy):
                channel.will_close = True
            elif channel.idle and now - channel.last_activity > self.policy.idle_timeout_s:
                channel.will_close = True


def guarded_server(app: Any, policy: ConnectionPolicy, **adjustments: Any) -> GuardedServer:
    """A bound, listening server (port 0 picks a free port: see `.effective_port`)."""
    adj = Adjustments(connection_limit=policy.limit, cleanup_interval=policy.check_interval_s,
                      channel_timeout=max(1, int(policy.idle_timeout_s)), asyncore_use_poll=True, **adjustments)
    return GuardedServer(app, adj, policy)
