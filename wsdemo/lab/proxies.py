"""What the network between a client and a server does to WebSocket: three proxies.

Each is a loopback TCP relay in front of ``host:port`` (``start()``, then connect to
``proxy.port``; ``close()`` or ``async with``), built to show one failure that real
infrastructure causes:

* :class:`NaiveProxy` — an HTTP/1.1 proxy that forwards requests the way a proxy
  written for plain HTTP does: it removes the hop-by-hop headers (RFC 9110 §7.6.1:
  ``Connection``, the headers it names, and ``Upgrade``, ``Keep-Alive``, ``TE``,
  ``Transfer-Encoding``, ``Proxy-Connection``). The server then never hears that the
  client asked for WebSocket (RFC 6455 §4.1 makes ``Upgrade: websocket`` and
  ``Connection: Upgrade`` part of the opening handshake), so no ``101`` comes back.
* :class:`IdleTimeoutProxy` — a load balancer's idle timeout: it cuts a connection on
  which no byte has passed, either way, for ``idle`` seconds. WebSocket pings are
  bytes, so a server that pings keeps a quiet connection open.
* :class:`StallProxy` — a reader on a slow or stuck network: after :meth:`~StallProxy.stall`
  it stops reading what the server sends, so the server's writes pile up — until
  :meth:`~StallProxy.resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Self

__all__ = ["HOP_BY_HOP", "IdleTimeoutProxy", "NaiveProxy", "StallProxy", "header_names",
           "strip_hop_by_hop", "waiting_bytes"]

_READ_SIZE = 65536

#: Headers meant for one hop only (RFC 9110 §7.6.1), which a proxy does not forward.
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade")


def strip_hop_by_hop(head: bytes) -> bytes:
    """An HTTP/1.1 message head without its hop-by-hop headers and without the headers
    its ``Connection`` header names — what a proxy that only knows HTTP forwards."""
    start, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    named = set(HOP_BY_HOP)
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "connection":
            named |= {token.strip().lower() for token in value.split(",") if token.strip()}
    kept = [line for line in lines if line.partition(":")[0].strip().lower() not in named]
    return "\r\n".join([start, *kept, "", ""]).encode("latin-1")


def header_names(head: bytes) -> list[str]:
    """The header names of an HTTP message head, in order, as sent."""
    return [line.partition(":")[0] for line in head.decode("latin-1").split("\r\n")[1:] if line]


def waiting_bytes(handler: Any) -> int:
    """Bytes a Tornado WebSocket handler has written that its socket has not taken yet:
    what its server holds in memory for that one client (0 once it is closed)."""
    connection = getattr(handler, "ws_connection", None)
    stream = getattr(connection, "stream", None)
    return 0 if stream is None or stream.closed() else len(stream._write_buffer)


class _Relay:
    """A loopback TCP relay to ``host:port``; what passes is up to the subclass."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.upstream_port = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening and drop every connection without a closing handshake."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.upstream_port)

    async def _accept(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await self._open_upstream()
        except OSError:
            client_w.transport.abort()
            return
        self._writers += [client_w, server_w]
        await self._connected(client_r, client_w, server_r, server_w)

    async def _connected(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                         server_r: asyncio.StreamReader, server_w: asyncio.StreamWriter) -> None:
        self._spawn(self._pump(client_r, server_w, upstream=True))
        self._spawn(self._pump(server_r, client_w, upstream=False))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    upstream: bool) -> None:
        try:
            while data := await self._read(reader, upstream=upstream):
                writer.write(data)
                await writer.drain()
            writer.close()
        except (ConnectionError, OSError):
            writer.transport.abort()

    async def _read(self, reader: asyncio.StreamReader, *, upstream: bool) -> bytes:
        return await reader.read(_READ_SIZE)


class NaiveProxy(_Relay):
    """An HTTP/1.1 forwarding proxy that knows nothing of WebSocket.

    For each connection it reads the request head, forwards it without the hop-by-hop
    headers (and with ``Connection: close``: one request per upstream connection),
    then copies the response back, also without hop-by-hop headers, and closes.
    :attr:`received` keeps each request head as the client sent it, :attr:`forwarded`
    as the server received it, and :attr:`answered` each response's status line as the
    client received it.
    """

    def __init__(self, host: str, port: int):
        super().__init__(host, port)
        self.received: list[bytes] = []
        self.forwarded: list[bytes] = []
        self.answered: list[str] = []

    async def _connected(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                         server_r: asyncio.StreamReader, server_w: asyncio.StreamWriter) -> None:
        try:
            head = await client_r.readuntil(b"\r\n\r\n")
            self.received.append(head)
            request = strip_hop_by_hop(head)[:-2] + b"Connection: close\r\n\r\n"
            self.forwarded.append(request)
            server_w.write(request)
            await server_w.drain()
            response = strip_hop_by_hop(await server_r.readuntil(b"\r\n\r\n"))
            self.answered.append(response.split(b"\r\n", 1)[0].decode("latin-1"))
            client_w.write(response)
            while data := await server_r.read(_READ_SIZE):  # the body, up to the close
                client_w.write(data)
                await client_w.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                OSError):
            pass
        finally:
            for writer in (server_w, client_w):
                writer.close()


class IdleTimeoutProxy(_Relay):
    """Cuts a connection once no byte has passed, either way, for ``idle`` seconds.

    As a load balancer's idle timeout does (an AWS Application Load Balancer's is 60 s
    by default; nginx's ``proxy_read_timeout`` is 60 s): both sides are dropped with no
    closing handshake. :attr:`cuts` counts the connections cut; :attr:`bytes_passed`
    the bytes relayed, both ways.
    """

    def __init__(self, host: str, port: int, *, idle: float):
        super().__init__(host, port)
        self.idle = idle
        self.cuts = 0
        self.bytes_passed = 0

    async def _connected(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                         server_r: asyncio.StreamReader, server_w: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        last = [loop.time()]  # this connection's last byte, either way

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(_READ_SIZE):
                    last[0] = loop.time()
                    self.bytes_passed += len(data)
                    writer.write(data)
                    await writer.drain()
                writer.close()
            except (ConnectionError, OSError):
                writer.transport.abort()

        async def watch() -> None:
            while not (client_w.transport.is_closing() or server_w.transport.is_closing()):
                quiet = loop.time() - last[0]
                if quiet >= self.idle:
                    self.cuts += 1
                    client_w.transport.abort()
                    server_w.transport.abort()
                    return
                await asyncio.sleep(self.idle - quiet)  # the timer itself: when it would expire

        self._spawn(pump(client_r, server_w))
        self._spawn(pump(server_r, client_w))
        self._spawn(watch())


class StallProxy(_Relay):
    """A client whose network stops taking data: after :meth:`stall` nothing more is read
    from the server (a small receive buffer on that side, so the server notices soon);
    :meth:`resume` reads again and delivers what waited."""

    def __init__(self, host: str, port: int, *, receive_buffer: int = 16384):
        super().__init__(host, port)
        self.receive_buffer = receive_buffer
        self._flowing = asyncio.Event()
        self._flowing.set()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Set before connecting, so that the window the server is offered is small too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.upstream_port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=self.receive_buffer)

    async def _read(self, reader: asyncio.StreamReader, *, upstream: bool) -> bytes:
        if not upstream:
            await self._flowing.wait()
        with contextlib.suppress(ConnectionError):
            return await reader.read(_READ_SIZE if upstream else self.receive_buffer)
        return b""
