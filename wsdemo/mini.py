"""The smallest WebSocket server and client: the wire codec over asyncio streams.

Every rule of RFC 6455 lives in :mod:`wsdemo.wire`; this module only moves
bytes between a TCP stream and a sans-I/O connection, in one loop::

    data = await reader.read(65536)           # bytes from TCP
    protocol.receive_data(data)               # the codec applies the RFC
    for event in protocol.events_received():  # messages for the application
        ...
    writer.write(protocol.data_to_send())     # pongs, close replies, errors

Use::

    server = await serve(echo, "127.0.0.1", 0)      # echo is the default handler
    client = await connect(server.url)
    await client.send_text("hello")
    assert await client.recv() == "hello"
    await client.close()
    await server.aclose()

A protocol error that arrives behind complete messages does not swallow them:
the application gets those messages and may answer them (until it asks for the
next message, at most ``CLOSE_TIMEOUT``), then the connection fails with the
error's code — the order Autobahn's strict cases (3.2, 4.1.3, 5.15) require.

It is a teaching server: no TLS (``ws://`` only), no extensions, and unread
messages wait in an unbounded queue — ``wsdemo.server`` (Tornado) is the real one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from urllib.parse import urlsplit

from .wire import (
    BinaryMessage,
    ClientConnection,
    CloseCode,
    Connection,
    ConnectionFailed,
    Event,
    Role,
    ServerConnection,
    State,
    TextMessage,
)

__all__ = ["ConnectionClosed", "MiniClient", "MiniConnection", "MiniServer", "connect", "echo",
           "serve"]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0


class ConnectionClosed(Exception):
    """The WebSocket connection is closed; ``code``/``reason`` say how (§7.1.5, §7.1.6)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class MiniConnection:
    """One open WebSocket connection, either side: send, receive, close."""

    def __init__(
        self,
        protocol: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        early_events: Sequence[Event] = (),
    ) -> None:
        self.protocol = protocol
        self._reader = reader
        self._writer = writer
        self._messages: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._closed = asyncio.Event()
        # set when the application has taken every queued message and asks for more
        self._caught_up = asyncio.Event()
        # Frames may arrive in the same TCP segment as the handshake. If the
        # caller already fetched them and a failure waits behind them, asking
        # for events again now would fail before the application saw them.
        self._dispatch(early_events)
        if not (early_events and protocol.failure_pending):
            self._dispatch(protocol.events_received())
        self._reading = asyncio.create_task(self._read_loop())

    @property
    def subprotocol(self) -> str | None:
        return self.protocol.subprotocol

    @property
    def close_code(self) -> int | None:
        """The peer's close code, our failure's code, or 1006; None while open."""
        if not self._closed.is_set():
            return None
        return self._close_info()[0]

    def _close_info(self) -> tuple[int, str]:
        if self.protocol.close_received is not None:
            return self.protocol.close_received.code, self.protocol.close_received.reason
        if self.protocol.failure is not None:
            return self.protocol.failure.close_code, self.protocol.failure.reason
        return CloseCode.ABNORMAL_CLOSURE, ""

    def _dispatch(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, (TextMessage, BinaryMessage)):
                self._caught_up.clear()
                self._messages.put_nowait(event.data)
            elif isinstance(event, ConnectionFailed):
                log.info("connection failed: %s", event.error)
            # Pings are answered by the codec itself; Close ends the read loop.

    async def _flush(self) -> None:
        data = self.protocol.data_to_send()
        if data:
            try:
                self._writer.write(data)
                await self._writer.drain()
            except OSError:
                pass  # the peer is gone: the next read sees EOF

    async def _fail_when_caught_up(self) -> None:
        """A failure waits behind delivered messages: let the application take
        (and answer) them, then let the codec fail the connection."""
        if self.protocol.failure_pending:
            try:
                await asyncio.wait_for(self._caught_up.wait(), CLOSE_TIMEOUT)
            except TimeoutError:
                pass  # an application that does not read does not hold the failure
            self._dispatch(self.protocol.events_received())
            await self._flush()

    async def _read_loop(self) -> None:
        try:
            await self._flush()
            await self._fail_when_caught_up()
            while self.protocol.state is not State.CLOSED:
                try:
                    data = await self._reader.read(65536)
                except OSError:
                    data = b""
                if data:
                    self.protocol.receive_data(data)
                else:
                    self.protocol.receive_eof()
                self._dispatch(self.protocol.events_received())
                await self._flush()
                await self._fail_when_caught_up()
            if self.protocol.role is Role.CLIENT and self.protocol.failure is None:
                # §7.1.1: the server closes TCP first, so its port is not left in
                # TIME_WAIT; the client waits (boundedly) for that EOF.
                try:
                    await asyncio.wait_for(self._reader.read(), CLOSE_TIMEOUT)
                except (TimeoutError, OSError):
                    pass
        finally:
            self._writer.close()
            self._messages.put_nowait(None)
            self._closed.set()

    async def send_text(self, text: str) -> None:
        """Send one text message."""
        self._require_open()
        self.protocol.send_text(text)
        await self._flush()

    async def send_binary(self, data: bytes) -> None:
        """Send one binary message."""
        self._require_open()
        self.protocol.send_binary(data)
        await self._flush()

    async def send(self, message: str | bytes) -> None:
        """Send ``str`` as text, ``bytes`` as binary."""
        if isinstance(message, str):
            await self.send_text(message)
        else:
            await self.send_binary(message)

    def _require_open(self) -> None:
        if self.protocol.state is not State.OPEN:
            raise ConnectionClosed(*self._close_info())

    async def recv(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`ConnectionClosed` once the connection is closed.
        """
        if self._messages.empty():
            self._caught_up.set()
        message = await self._messages.get()
        if message is None:
            self._messages.put_nowait(None)  # every later recv() raises too
            raise ConnectionClosed(*self._close_info())
        return message

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosed:
            return

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake (§7.1.2), waiting at most ``CLOSE_TIMEOUT``.

        If a protocol failure is pending, its code is sent instead of ``code``.
        """
        self._caught_up.set()
        try:
            if self.protocol.state is State.OPEN:
                self.protocol.close(code, reason)
                await asyncio.wait_for(self._flush(), CLOSE_TIMEOUT)
            await asyncio.wait_for(self._closed.wait(), CLOSE_TIMEOUT)
        except TimeoutError:
            # The peer neither read nor answered: drop the TCP connection.
            self._writer.transport.abort()
            self._reading.cancel()
        await asyncio.wait({self._reading}, timeout=CLOSE_TIMEOUT)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> MiniConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


MiniClient = MiniConnection
"""What :func:`connect` returns: a client's side is the same connection."""

Handler = Callable[[MiniConnection], Awaitable[None]]


async def echo(connection: MiniConnection) -> None:
    """The default handler: send every message back as it came."""
    async for message in connection:
        await connection.send(message)


async def _read_handshake(
    protocol: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> list[Event]:
    """Read until the handshake is decided; write what the codec answers (a refusal)."""
    while True:
        data = await reader.read(65536)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        writer.write(protocol.data_to_send())
        events = protocol.events_received()
        if events:
            return events


class MiniServer:
    """A running :func:`serve`: its port and URL, and how to stop it."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self.connections: set[MiniConnection] = set()

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = self._server.sockets[0].getsockname()[0]
        return f"ws://{host}:{self.port}/"

    async def aclose(self) -> None:
        """Stop listening and close every open connection with 1001 (going away)."""
        self._server.close()
        await asyncio.gather(
            *(c.close(CloseCode.GOING_AWAY, "server shutting down") for c in self.connections),
            return_exceptions=True,
        )
        await self._server.wait_closed()

    async def __aenter__(self) -> MiniServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def serve(
    handler: Handler = echo,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    subprotocols: Sequence[str] = (),
    allowed_origins: Collection[str] | None = None,
    max_size: int | None = 2**20,
) -> MiniServer:
    """Listen on ``host:port`` (0: any free port) and run ``handler`` per connection.

    When the handler returns, the connection is closed with 1000; if it
    raises, with 1011 (internal error).
    """

    async def on_tcp_connection(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        protocol = ServerConnection(subprotocols=subprotocols, allowed_origins=allowed_origins,
                                    max_size=max_size)
        try:
            events = await asyncio.wait_for(_read_handshake(protocol, reader, writer),
                                            HANDSHAKE_TIMEOUT)
        except (TimeoutError, OSError):
            events = []
        if not events or isinstance(events[0], ConnectionFailed):
            writer.close()  # the refusal, if any, was written by _read_handshake
            return
        protocol.accept()
        connection = MiniConnection(protocol, reader, writer)
        server.connections.add(connection)
        code, reason = CloseCode.NORMAL_CLOSURE, ""
        try:
            await handler(connection)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("handler failed")
            code, reason = CloseCode.INTERNAL_ERROR, "internal error"
        finally:
            await connection.close(code, reason)
            server.connections.discard(connection)

    server = MiniServer(await asyncio.start_server(on_tcp_connection, host, port))
    return server


async def connect(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    origin: str | None = None,
    max_size: int | None = 2**20,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> MiniClient:
    """Open a ``ws://`` URL: TCP connect, send the Upgrade, check the 101 (§4.1).

    Raises :class:`~wsdemo.wire.HandshakeError` if the server refuses.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"mini.connect speaks ws:// only, not {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port or 80), timeout)
    protocol = ClientConnection(parts.netloc.rpartition("@")[2], target,
                                subprotocols=subprotocols, origin=origin, max_size=max_size)
    writer.write(protocol.data_to_send())
    try:
        events = await asyncio.wait_for(_read_handshake(protocol, reader, writer), timeout)
    except BaseException:
        writer.close()
        raise
    if isinstance(events[0], ConnectionFailed):
        writer.close()
        raise events[0].error
    return MiniClient(protocol, reader, writer, events[1:])
