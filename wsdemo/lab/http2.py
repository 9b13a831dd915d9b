"""Lesson 09's I/O: an HTTP/2 server and client on loopback, with the tap between them.

The protocol work is sans-I/O (:mod:`wsdemo.wire.http2` on h2, and the tap's
:mod:`wsdemo.tap.http2` view); this module only moves bytes over asyncio streams:

* :class:`EchoServer` — HTTP/2 on 127.0.0.1. ``/ws`` is a WebSocket (RFC 8441) that
  sends every text message back; ``GET /status`` answers, as JSON, how many
  WebSocket streams this connection has open; anything else is a 404.
* :class:`Client` — one HTTP/2 connection, the events it received, and the wait
  for one of them.
* :class:`Conversation` — server, tap and client together: :meth:`Conversation.settle`
  waits until nothing is in flight, :meth:`Conversation.new_frames` decodes what the
  tap saw since the last call.

Every wait has a timeout; none sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, Self

import h2.config
import h2.connection
import h2.errors
import h2.events

from ..tap import Tap
from ..tap.decode import Direction
from ..tap.http2 import Http2Decoder, Item, view_table
from ..tap.proxy import quiet_when_cut
from ..wire.connection import TextMessage
from ..wire.errors import LocalProtocolError
from ..wire.http2 import (
    H2Client,
    H2Server,
    RequestReceived,
    WebSocketMessage,
    WebSocketRequested,
)

__all__ = ["Client", "Conversation", "EchoServer", "refusals"]

SUBPROTOCOL = "wsdemo.v1"
_READ = 65536


class EchoServer:
    """HTTP/2 on loopback; each TCP connection gets its own :class:`H2Server`."""

    def __init__(self, *, enable_websocket: bool = True,
                 on_change: Callable[[], None] | None = None) -> None:
        self.enable_websocket = enable_websocket
        self.connections: list[H2Server] = []
        self.events: list[Any] = []
        self.bytes_received = 0
        self.bytes_sent = 0
        self.on_change = on_change
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        self._server = await asyncio.start_server(quiet_when_cut(self._serve), host, port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        conn = H2Server(enable_websocket=self.enable_websocket, subprotocols=[SUBPROTOCOL])
        self.connections.append(conn)
        try:
            self._write(writer, conn)
            while not conn.ended:
                data = await reader.read(_READ)
                if not data:
                    break
                self.bytes_received += len(data)
                conn.receive_data(data)
                for event in conn.events_received():
                    self.events.append(event)
                    self._answer(conn, event)
                self._write(writer, conn)
                self._changed()
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)
            self._changed()

    def _answer(self, conn: H2Server, event: Any) -> None:
        if isinstance(event, WebSocketRequested):
            if event.path == "/ws":
                conn.accept(event.stream_id)
            else:
                conn.reject(event.stream_id, 404, f"no WebSocket at {event.path}")
        elif isinstance(event, WebSocketMessage) and isinstance(event.event, TextMessage):
            conn.send_text(event.stream_id, event.event.data)
        elif isinstance(event, RequestReceived):
            if event.method == "GET" and event.path == "/status":
                open_ws = sum(1 for ws in conn.websockets.values() if ws.state.value == "OPEN")
                body = json.dumps({"websocket_streams_open": open_ws}).encode()
                conn.respond(event.stream_id, 200, body, [("content-type", "application/json")])
            else:
                conn.respond(event.stream_id, 404, b"not found")

    def _write(self, writer: asyncio.StreamWriter, conn: H2Server) -> None:
        data = conn.data_to_send()
        if data:
            writer.write(data)
            self.bytes_sent += len(data)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class Client:
    """One HTTP/2 connection from the client's side; ``h2`` is its :class:`H2Client`."""

    def __init__(self, h2: H2Client, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter,
                 on_change: Callable[[], None] | None = None) -> None:
        self.h2 = h2
        self.events: list[Any] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self.on_change = on_change
        self._reader = reader
        self._writer = writer
        self._arrived = asyncio.Event()
        self.flush()
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, port: int, *, authority: str, host: str = "127.0.0.1",
                      mask_source: Callable[[], bytes] | None = None,
                      on_change: Callable[[], None] | None = None) -> Client:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        return cls(H2Client(authority, mask_source=mask_source), reader, writer, on_change)

    @property
    def sockname(self) -> tuple[Any, ...]:
        """Our end of the TCP connection: the same for every stream."""
        return self._writer.get_extra_info("sockname")

    def flush(self) -> None:
        """Write what the HTTP/2 connection has queued."""
        data = self.h2.data_to_send()
        if data:
            self._writer.write(data)
            self.bytes_sent += len(data)
            self._changed()

    async def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        """The first event received (already or later) for which ``predicate`` is true."""
        async def until() -> Any:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._arrived.clear()
                await self._arrived.wait()
        return await asyncio.wait_for(until(), timeout)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds, checked after each read from the server."""
        async def until() -> None:
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()
        await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), 5)

    async def _read(self) -> None:
        try:
            while True:
                data = await self._reader.read(_READ)
                if not data:
                    break
                self.bytes_received += len(data)
                self.h2.receive_data(data)
                self.events += self.h2.events_received()
                self.flush()  # SETTINGS ACK, the codec's Pong or Close echo, END_STREAM
                self._arrived.set()
                self._changed()
        except (ConnectionError, OSError):
            pass
        finally:
            self._arrived.set()
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class Conversation:
    """An :class:`EchoServer`, a tap in front of it, and a :class:`Client` through the tap.

    The client names the server ``authority`` in ``:authority``: a fixed name keeps
    the HPACK bytes (and so the frame lengths) the same on every run, where the
    tap's random port would not.
    """

    def __init__(self, server: EchoServer, tap: Tap, client: Client) -> None:
        self.server = server
        self.tap = tap
        self.client = client
        self.decoder = Http2Decoder()
        self._seen = 0  # chunks of the tap's capture already decoded
        self._changed = asyncio.Event()

    @classmethod
    async def start(cls, *, authority: str = "wsdemo.test", enable_websocket: bool = True,
                    mask_source: Callable[[], bytes] | None = None) -> Conversation:
        changed = asyncio.Event()
        server = await EchoServer(enable_websocket=enable_websocket,
                                  on_change=changed.set).start()
        tap = await Tap(("127.0.0.1", server.port), on_chunk=lambda _: changed.set()).start()
        client = await Client.connect(tap.port, authority=authority, mask_source=mask_source,
                                      on_change=changed.set)
        conversation = cls(server, tap, client)
        conversation._changed = changed
        return conversation

    def quiet(self) -> bool:
        """Nothing in flight: every byte either side wrote went through the tap and
        was read (and answered) by the other side."""
        cap = self.tap.capture
        up, down = cap.nbytes(Direction.C2S), cap.nbytes(Direction.S2C)
        return (self.client.bytes_sent == up == self.server.bytes_received
                and self.server.bytes_sent == down == self.client.bytes_received)

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until :meth:`quiet`: the step's whole exchange is on the wire, and done."""
        async def until() -> None:
            while True:
                self._changed.clear()
                if self.quiet():
                    return
                await self._changed.wait()
        await asyncio.wait_for(until(), timeout)

    def new_frames(self) -> list[Item]:
        """The HTTP/2 items in the chunks the tap recorded since the last call."""
        chunks = self.tap.capture.chunks[self._seen:]
        self._seen += len(chunks)
        items: list[Item] = []
        for chunk in chunks:
            items += self.decoder.receive(chunk.direction, chunk.data)
        return items

    async def step(self, timeout: float = 5.0) -> str:
        """:meth:`settle`, then the new frames as text, the client's first (see
        :func:`~wsdemo.tap.http2.view_table`)."""
        await self.settle(timeout)
        return view_table(self.new_frames(), by_direction=True)

    async def close(self) -> None:
        await self.client.close()
        # let the tap see both ends close before it stops, so nothing is cut mid-read
        with contextlib.suppress(TimeoutError):
            await self.tap.wait_closed(timeout=5)
        await self.tap.close()
        await self.server.close()


# ---------------------------------------------------------------- refusals, sans-I/O

_CONNECT = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":path", "/ws"), (":authority", "wsdemo.test"), ("sec-websocket-version", "13")]


def _replace(name: str, value: str | None) -> list[tuple[str, str]]:
    """The valid CONNECT with one field changed in place (None: left out)."""
    return [(k, v if k != name else value) for k, v in _CONNECT
            if k != name or value is not None]


_CASES: list[tuple[str, list[tuple[str, str]], dict[str, bool]]] = [
    ("CONNECT before the server's SETTINGS", _CONNECT, {"wait": False}),
    ("CONNECT to a server without the setting", _CONNECT, {"enable": False}),
    ("sec-websocket-version: 8", _replace("sec-websocket-version", "8"), {}),
    (":protocol chat", _replace(":protocol", "chat"), {}),
    ("CONNECT without :protocol (a tunnel)",
     [(":method", "CONNECT"), (":authority", "wsdemo.test:443")], {}),
    ("CONNECT with :path but no :protocol", _replace(":protocol", None), {}),
]


def _answer(events: list[h2.events.Event]) -> str:
    for event in events:
        if isinstance(event, h2.events.ResponseReceived):
            fields = {k.decode(): v.decode() for k, v in event.headers}
            extra = ("" if "sec-websocket-version" not in fields
                     else f", sec-websocket-version: {fields['sec-websocket-version']}")
            return f":status {fields[':status']}{extra}"
        if isinstance(event, h2.events.StreamReset):
            return f"RST_STREAM {h2.errors.ErrorCodes(event.error_code).name}"
        if isinstance(event, h2.events.ConnectionTerminated):
            return f"GOAWAY {h2.errors.ErrorCodes(event.error_code).name} (whole connection)"
    return "no answer"


def refusals() -> list[tuple[str, str]]:
    """What :class:`~wsdemo.wire.http2.H2Server` answers to each bad extended CONNECT.

    Sans-I/O, no socket: a bare h2 client crafts each request (with h2's own
    checks of what it sends turned off), the server reads it, the client reads
    the answer. The first row is our own client, which refuses to send at all.
    """
    rows = []
    try:
        H2Client("wsdemo.test").open_websocket("/ws")
    except LocalProtocolError as exc:
        rows.append(("our client, before the server's SETTINGS", f"not sent: {exc}"))
    for case, headers, options in _CASES:
        raw = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False))
        raw.initiate_connection()
        server = H2Server(enable_websocket=options.get("enable", True))
        if options.get("wait", True):  # settings both ways, acknowledged
            server.receive_data(raw.data_to_send())
            raw.receive_data(server.data_to_send())
        raw.send_headers(1, headers)
        server.receive_data(raw.data_to_send())
        rows.append((case, _answer(raw.receive_data(server.data_to_send()))))
    return rows
