"""One stream of updates, four ways to deliver it: polling, long polling, SSE, WebSocket.

Lesson 02 puts the tap in front of each and compares what crosses the wire.

* **Polling** over one keep-alive connection: the client asks
  ``GET /poll?after=N`` every ``interval`` seconds and gets what is new (often
  nothing). Keep-alive saves the TCP handshake; it does not change who speaks
  first — always the client.
* **Long polling**: ``GET /long-poll?after=N`` and the server holds the answer
  until there is something new. Still one request per response: the server
  can only answer, so between an answer and the next request it is mute.
* **Server-Sent Events**: ``GET /events`` and the answer never ends: a
  ``text/event-stream`` response that carries one ``id:``/``data:`` block per
  update, whenever the server has one (:mod:`wsdemo.lab.sse`). Push, within
  one HTTP exchange; a reconnecting client sends ``Last-Event-ID`` and the
  server resumes after it. Anything the client wants to *say* is a new
  request (``POST /send``), on another connection.
* **WebSocket push**: one WebSocket; the server sends a text frame per update
  whenever it has one, and the client may send frames on the same connection.

Every update is the same JSON object ``{"seq": n, "data": "..."}`` with a
fixed-size ``data``, so bytes on the wire depend only on the exchanges, not on
the content. :class:`UnsolicitedResponder` shows what happens when a server
*tries* to speak first over HTTP/1.1.

Why one file of this length: lesson 02's polling, long-polling, SSE and WebSocket
servers and their clients, kept together so the lesson compares like with like.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
import tornado.websocket

from ..tap.capture import Capture
from ..tap.http import HttpMessage, HttpStreamSplitter, parse_head
from ..tap.proxy import Tap
from .conversation import plot_conversations
from .sse import EVENT_STREAM, ChunkedDecoder, EventStreamParser, format_event, read_event_stream

__all__ = [
    "Delivery",
    "EventStreamReceiver",
    "KeepAliveClient",
    "NotAnEventStream",
    "LongPoller",
    "METHODS",
    "Poller",
    "PushReceiver",
    "RateResult",
    "Received",
    "StdlibClient",
    "Update",
    "UpdateFeed",
    "UpdateServer",
    "UnsolicitedResponder",
    "conclusions",
    "measure_rates",
    "plot_conversations",
    "plot_rates",
    "sse_transport_bytes",
    "transport_bytes",
]

log = logging.getLogger(__name__)

METHODS = ("polling", "long polling", "SSE", "WebSocket")


@dataclass(frozen=True)
class Update:
    """One update: its sequence number, when it was published, its data."""

    seq: int
    t: float = field(repr=False)  # monotonic: differs every run
    data: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "data": self.data}


@dataclass(frozen=True)
class Delivery:
    """An update as one client received it."""

    seq: int
    published: float = field(repr=False)
    received: float = field(repr=False)

    @property
    def delay(self) -> float:
        return self.received - self.published


class UpdateFeed:
    """The source: :meth:`publish` appends an update; readers ask or wait."""

    def __init__(self, data_size: int = 32) -> None:
        self.data_size = data_size
        self.updates: list[Update] = []
        self._published = asyncio.Event()
        self._subscribers: list[Callable[[Update], None]] = []

    @property
    def seq(self) -> int:
        """The last published sequence number (0 before the first)."""
        return self.updates[-1].seq if self.updates else 0

    def publish(self) -> Update:
        seq = self.seq + 1
        update = Update(seq, time.monotonic(), f"update {seq:06d}".ljust(self.data_size, "."))
        self.updates.append(update)
        # wake every waiting long poll at once, then arm a fresh event
        self._published.set()
        self._published = asyncio.Event()
        for callback in list(self._subscribers):
            callback(update)
        return update

    def after(self, seq: int) -> list[Update]:
        """Updates with a sequence number above ``seq``."""
        return self.updates[seq:] if seq >= 0 else list(self.updates)

    async def wait_after(self, seq: int, timeout: float) -> list[Update]:
        """Updates above ``seq``, waiting up to ``timeout`` s for one (empty list on timeout)."""
        deadline = time.monotonic() + timeout
        while not self.after(seq):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), remaining)
        return self.after(seq)

    def subscribe(self, callback: Callable[[Update], None]) -> Callable[[], None]:
        """Call ``callback(update)`` on each publish; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def publish_at(self, rate: float, count: int) -> None:
        """Publish ``count`` updates, ``rate`` per second, on a fixed schedule."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count):
            # the schedule, not the previous publish, sets the next instant: no drift
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            self.publish()


def _updates_body(updates: Iterable[Update]) -> bytes:
    return json.dumps({"updates": [u.as_json() for u in updates]}, separators=(",", ":")).encode()


class _FeedHandler(tornado.web.RequestHandler):
    def initialize(self, feed: UpdateFeed) -> None:
        self.feed = feed

    def compute_etag(self) -> None:
        # an Etag would add bytes that have nothing to do with the lesson
        return None

    def _after(self) -> int:
        try:
            return int(self.get_query_argument("after", "0"))
        except ValueError:
            raise tornado.web.HTTPError(400, "after must be an integer") from None


class _PollHandler(_FeedHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(_updates_body(self.feed.after(self._after())))


class _LongPollHandler(_FeedHandler):
    async def get(self) -> None:
        try:
            hold = min(float(self.get_query_argument("timeout", "20")), 60.0)
        except ValueError:
            raise tornado.web.HTTPError(400, "timeout must be a number") from None
        updates = await self.feed.wait_after(self._after(), hold)
        self.set_header("Content-Type", "application/json")
        self.write(_updates_body(updates))


@dataclass(frozen=True)
class Received:
    """Something a client sent to the server: by which door, what, when."""

    via: str  # "POST /send" or "WebSocket"
    text: str
    t: float = field(repr=False)


class _EventStreamHandler(_FeedHandler):
    """``GET /events``: one response that never ends, an event per update (§9.2.5)."""

    def initialize(self, feed: UpdateFeed, server: UpdateServer) -> None:
        super().initialize(feed)
        self.server = server
        self._gone = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None

    async def get(self) -> None:
        # Last-Event-ID (sent by a reconnecting EventSource, §9.2.4) wins over ?after=
        resume = self.request.headers.get("Last-Event-ID")
        self.server.resumes.append(resume)
        if resume is not None:
            try:
                after = int(resume)
            except ValueError:
                raise tornado.web.HTTPError(
                    400, "Last-Event-ID must be a sequence number") from None
        else:
            after = self._after()
        self.set_header("Content-Type", EVENT_STREAM)
        self.set_header("Cache-Control", "no-store")
        if self.server.sse_retry is not None:
            self.write(format_event(None, retry=self.server.sse_retry))
        self.server._streams.add(self)
        try:
            await self.flush()  # the head leaves now, not with the first update
            for update in self.feed.after(after):
                self._send(update)  # the missed ones first, a chunk each like the live ones
            self._unsubscribe = self.feed.subscribe(self._send)
            await self._gone.wait()
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            self._stop()

    def _send(self, update: Update) -> None:
        if self._gone.is_set():
            return
        data = json.dumps(update.as_json(), separators=(",", ":"))
        self.write(format_event(data, id=update.seq))
        # one HTTP chunk per event; a failed write ends the stream
        self.flush().add_done_callback(self._after_flush)

    def _after_flush(self, done: asyncio.Future[None]) -> None:
        if done.exception() is not None:
            self._gone.set()

    def drop(self) -> None:
        """Close the TCP connection under the stream: no last chunk, no goodbye."""
        self._gone.set()
        self.request.connection.stream.close()  # type: ignore[union-attr]

    def on_connection_close(self) -> None:
        self._gone.set()

    def _stop(self) -> None:
        self.server._streams.discard(self)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class _SendHandler(tornado.web.RequestHandler):
    """``POST /send``: the only way an SSE client can say something to the server."""

    def initialize(self, server: UpdateServer) -> None:
        self.server = server

    def post(self) -> None:
        try:
            text = self.request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise tornado.web.HTTPError(400, "the body must be UTF-8 text") from None
        self.server._receive(Received("POST /send", text, time.monotonic()))
        self.set_status(204)


class _PushHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, feed: UpdateFeed, server: UpdateServer) -> None:
        self.feed = feed
        self.server = server
        self._unsubscribe: Callable[[], None] | None = None

    def on_message(self, message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        self.server._receive(Received("WebSocket", text, time.monotonic()))

    def open(self) -> None:
        try:
            after = int(self.get_query_argument("after", "0"))
        except ValueError:
            after = 0
        for update in self.feed.after(after):
            self._send(update)
        self._unsubscribe = self.feed.subscribe(self._send)

    def _send(self, update: Update) -> None:
        try:
            self.write_message(json.dumps(update.as_json(), separators=(",", ":")))
        except tornado.websocket.WebSocketClosedError:
            self.on_close()

    def on_close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class UpdateServer:
    """A Tornado server for one :class:`UpdateFeed` on the running loop.

    ``/poll``, ``/long-poll``, ``/events`` (SSE), ``POST /send`` (HTTP) and
    ``/push`` (WebSocket), on a random loopback port unless ``port`` is given.
    ``sse_retry`` (ms), if set, opens every event stream with a ``retry:``
    line: how long a client waits before it reconnects. What clients sent
    (``POST /send`` or a WebSocket message) is in :attr:`received`; the
    ``Last-Event-ID`` of every event-stream request (``None`` when absent) in
    :attr:`resumes`.
    """

    def __init__(self, feed: UpdateFeed, port: int = 0, host: str = "127.0.0.1",
                 sse_retry: int | None = None) -> None:
        self.feed = feed
        self.sse_retry = sse_retry
        self.received: list[Received] = []
        self.resumes: list[str | None] = []
        self._streams: set[_EventStreamHandler] = set()
        self._got = asyncio.Event()
        app = tornado.web.Application(
            [
                ("/poll", _PollHandler, {"feed": feed}),
                ("/long-poll", _LongPollHandler, {"feed": feed}),
                ("/events", _EventStreamHandler, {"feed": feed, "server": self}),
                ("/send", _SendHandler, {"server": self}),
                ("/push", _PushHandler, {"feed": feed, "server": self}),
            ]
        )
        sockets = tornado.netutil.bind_sockets(port, host)
        self._http_server = tornado.httpserver.HTTPServer(app)
        self._http_server.add_sockets(sockets)
        self.host = host
        self.port = sockets[0].getsockname()[1]

    @classmethod
    async def start(
        cls, feed: UpdateFeed | None = None, port: int = 0, host: str = "127.0.0.1",
        *, sse_retry: int | None = None,
    ) -> UpdateServer:
        return cls(feed or UpdateFeed(), port, host, sse_retry)

    def _receive(self, item: Received) -> None:
        self.received.append(item)
        self._got.set()

    async def wait_received(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until clients have sent ``count`` messages in all; returns them."""

        async def until() -> None:
            while len(self.received) < count:
                self._got.clear()
                await self._got.wait()

        await asyncio.wait_for(until(), timeout)
        return self.received

    @property
    def streams(self) -> int:
        """Event streams open now."""
        return len(self._streams)

    def drop_streams(self) -> int:
        """Cut every open event stream's TCP connection; returns how many."""
        streams = list(self._streams)
        for stream in streams:
            stream.drop()
        return len(streams)

    async def close(self) -> None:
        self.drop_streams()
        self._http_server.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._http_server.close_all_connections(), 5)


class KeepAliveClient:
    """The smallest HTTP/1.1 client that keeps its connection: GET, read, repeat.

    It reads exactly one response per request (the tap's splitter finds where
    it ends), and never reads between requests — like every HTTP/1.1 client.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._responses = HttpStreamSplitter(requests=False)
        self.requests_sent = 0

    async def connect(self, timeout: float = 5.0) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout
        )

    async def get(self, target: str, timeout: float = 30.0) -> HttpMessage:
        return await self.request("GET", target, timeout=timeout)

    async def post(self, target: str, body: str, timeout: float = 30.0) -> HttpMessage:
        """``POST`` a UTF-8 text body; returns the response."""
        return await self.request("POST", target, body.encode("utf-8"), timeout=timeout)

    async def request(self, method: str, target: str, body: bytes = b"",
                      timeout: float = 30.0) -> HttpMessage:
        if self._writer is None or self._reader is None:
            await self.connect()
        assert self._writer is not None and self._reader is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body or method in ("POST", "PUT"):
            head += f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        self.requests_sent += 1
        self._responses.expect_response_to(method)
        return await asyncio.wait_for(self._read_response(), timeout)

    async def _read_response(self) -> HttpMessage:
        assert self._reader is not None
        while True:
            message = self._responses.next_message()
            if message is not None:
                return message
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("server closed the connection before answering")
            self._responses.receive(data)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), 5)
            self._writer = self._reader = None


class _Receiver:
    """What the three clients share: where they are in the feed, what they got."""

    def __init__(self, host: str, port: int, feed: UpdateFeed, after: int = 0) -> None:
        self.host, self.port = host, port
        self.feed = feed
        self.last_seq = after
        self.deliveries: list[Delivery] = []
        self._got = asyncio.Event()

    def _take(self, items: list[dict[str, Any]]) -> list[int]:
        now = time.monotonic()
        updates = self.feed.updates
        seqs = []
        for item in items:
            seq = int(item["seq"])
            if seq <= self.last_seq:
                continue
            self.last_seq = seq
            published = updates[seq - 1].t if 0 < seq <= len(updates) else now
            self.deliveries.append(Delivery(seq, published, now))
            seqs.append(seq)
        if seqs:
            self._got.set()
        return seqs

    async def wait_for_seq(self, seq: int, timeout: float = 5.0) -> None:
        """Wait until update ``seq`` has been received."""

        async def until() -> None:
            while self.last_seq < seq:
                self._got.clear()
                await self._got.wait()

        await asyncio.wait_for(until(), timeout)


class Poller(_Receiver):
    """Polling over one keep-alive connection."""

    def __init__(self, host: str, port: int, feed: UpdateFeed, after: int = 0) -> None:
        super().__init__(host, port, feed, after)
        self.http = KeepAliveClient(host, port)

    async def poll_once(self) -> list[int]:
        """One request/response pair; returns the sequence numbers it brought."""
        response = await self.http.get(f"/poll?after={self.last_seq}")
        return self._take(json.loads(response.body)["updates"])

    async def run(self, until_seq: int, interval: float) -> None:
        while self.last_seq < until_seq:
            await self.poll_once()
            if self.last_seq < until_seq:
                # polling *is* waiting between questions
                await asyncio.sleep(interval)

    async def close(self) -> None:
        await self.http.close()


class LongPoller(_Receiver):
    """Long polling over one keep-alive connection."""

    def __init__(self, host: str, port: int, feed: UpdateFeed, after: int = 0,
                 hold: float = 20.0) -> None:
        super().__init__(host, port, feed, after)
        self.hold = hold
        self.http = KeepAliveClient(host, port)

    async def poll_once(self) -> list[int]:
        response = await self.http.get(
            f"/long-poll?after={self.last_seq}&timeout={self.hold:g}", timeout=self.hold + 5
        )
        return self._take(json.loads(response.body)["updates"])

    async def run(self, until_seq: int) -> None:
        while self.last_seq < until_seq:
            await self.poll_once()

    async def close(self) -> None:
        await self.http.close()


class PushReceiver(_Receiver):
    """A WebSocket client that just listens."""

    def __init__(self, host: str, port: int, feed: UpdateFeed, after: int = 0) -> None:
        super().__init__(host, port, feed, after)
        self.ws: tornado.websocket.WebSocketClientConnection | None = None
        self._reading: asyncio.Task[None] | None = None

    async def connect(self, timeout: float = 5.0) -> None:
        url = f"ws://{self.host}:{self.port}/push?after={self.last_seq}"
        self.ws = await asyncio.wait_for(tornado.websocket.websocket_connect(url), timeout)
        self._reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        while True:
            message = await self.ws.read_message()
            if message is None:
                return
            self._take([json.loads(message)])

    async def send(self, text: str) -> None:
        """Say something to the server: one text frame on the same connection."""
        assert self.ws is not None, "connect() first"
        await self.ws.write_message(text)

    async def close(self) -> None:
        if self.ws is not None:
            # a clean close handshake: Close frame both ways, code 1000
            self.ws.close(1000)
            if self._reading is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(self._reading, 5)
            self.ws = None


class NotAnEventStream(ConnectionError):
    """The server answered, but not with ``200`` and ``text/event-stream``."""


class EventStreamReceiver(_Receiver):
    """An ``EventSource`` in Python: ``GET /events``, read the endless answer, resume.

    It sends ``Accept: text/event-stream``, parses the stream as a browser
    does (:class:`~wsdemo.lab.sse.EventStreamParser`) and, when the connection
    drops, waits the reconnection time (the server's ``retry:``, else
    ``reconnect_after``) and asks again with ``Last-Event-ID`` — what a browser
    does by itself (WHATWG HTML §9.2.3). ``reconnect=False`` stops instead.
    An answer that is not an event stream (a ``400``, say) ends it for good,
    as it ends an ``EventSource``: :meth:`connect` raises
    :class:`NotAnEventStream`, and after a reconnect :attr:`failed` holds it.
    :attr:`requests` lists the ``Last-Event-ID`` each request carried (``None``
    for the first). Like ``EventSource``, it asks for the same URL every time
    (``/events?after=`` the position it started from): where to resume is said
    by the header alone.
    """

    def __init__(self, host: str, port: int, feed: UpdateFeed, after: int = 0, *,
                 reconnect: bool = True, reconnect_after: float = 1.0) -> None:
        super().__init__(host, port, feed, after)
        self.reconnect = reconnect
        self.reconnect_after = reconnect_after
        self.url = f"/events?after={after}"
        self.last_event_id = ""
        self.requests: list[str | None] = []
        self.connected = asyncio.Event()
        self.failed: NotAnEventStream | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._running: asyncio.Task[None] | None = None
        self._retry_ms: int | None = None
        self._chunked = False

    async def connect(self, timeout: float = 5.0) -> None:
        """Open the stream and wait for the response head; then read in the background."""
        reader = await asyncio.wait_for(self._open(), timeout)
        self._running = asyncio.ensure_future(self._run(reader))

    async def _open(self) -> asyncio.StreamReader:
        self.connected.clear()
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = (f"GET {self.url} HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\nAccept: {EVENT_STREAM}\r\n"
                "Cache-Control: no-cache\r\n")
        if self.last_event_id:
            head += f"Last-Event-ID: {self.last_event_id}\r\n"
        self.requests.append(self.last_event_id or None)
        self._writer.write(head.encode() + b"\r\n")
        raw = await reader.readuntil(b"\r\n\r\n")
        status, headers = parse_head(raw)
        kind = next((v for k, v in headers if k.lower() == "content-type"), "")
        if status.split(" ")[1:2] != ["200"] or not kind.startswith(EVENT_STREAM):
            self._writer.close()
            # a browser fails the connection for good here, and so do we (§9.2.3)
            raise NotAnEventStream(f"not an event stream: {status!r}, Content-Type {kind!r}")
        self._chunked = any(k.lower() == "transfer-encoding" and "chunked" in v.lower()
                            for k, v in headers)
        self.connected.set()
        return reader

    async def _run(self, reader: asyncio.StreamReader) -> None:
        while True:
            await self._read(reader)
            if not self.reconnect:
                return
            # the reconnection time, then a new request with Last-Event-ID (§9.2.3)
            wait = self._retry_ms / 1000 if self._retry_ms is not None else self.reconnect_after
            while True:
                await asyncio.sleep(wait)
                try:
                    reader = await asyncio.wait_for(self._open(), 5)
                    break
                except NotAnEventStream as refused:
                    self.failed = refused
                    log.info("event stream: %s; not reconnecting", refused)
                    return
                except (OSError, TimeoutError, asyncio.IncompleteReadError):
                    continue  # the server is away: try again after the same wait

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = EventStreamParser(self.last_event_id)
        decoder = ChunkedDecoder() if self._chunked else None
        try:
            while data := await reader.read(65536):
                body = decoder.feed(data) if decoder is not None else data
                for event in parser.feed(body):
                    self.last_event_id = event.last_event_id
                    self._take([json.loads(event.data)])
                self.last_event_id = parser.last_event_id
                self._retry_ms = parser.retry if parser.retry is not None else self._retry_ms
        except (ConnectionError, ValueError) as exc:
            log.info("event stream: %s", exc)
        finally:
            if self._writer is not None:
                self._writer.close()

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._running
            self._running = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), 5)
            self._writer = None


def sse_transport_bytes(capture: Capture) -> int:
    """Bytes that carried updates over SSE: everything but each connection's request
    and response head (paid once per connection, like the WebSocket handshake)."""
    total = capture.nbytes()
    for conn in capture.connections:
        view = read_event_stream(capture, conn)
        total -= len(view.request.raw) + view.head_nbytes
    return total


def transport_bytes(capture: Capture) -> int:
    """Bytes that carried updates: everything but the WebSocket opening and closing
    handshakes (paid once per connection, not per update)."""
    total = 0
    for m in capture.messages:
        if m.kind == "http" and (m.http.asks_for_websocket or m.http.status == 101):
            continue
        if m.kind == "frame" and m.frame.close is not None:
            continue
        total += m.nbytes
    return total


@dataclass(frozen=True)
class RateResult:
    """One delivery method at one update rate."""

    method: str
    rate: float
    updates: int
    bytes_per_update: float
    delays: tuple[float, ...] = field(repr=False)
    exchanges: int  # request/response pairs (HTTP), events (SSE) or frames (WebSocket)
    added_delay: float = 0.0  # what the tap added each way (s)

    @property
    def median_delay(self) -> float:
        return statistics.median(self.delays)

    def delay_quantile(self, q: float) -> float:
        """The delay below which a fraction ``q`` of the updates arrived."""
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_rates(
    rates: Iterable[float],
    *,
    seconds: float = 1.0,
    min_updates: int = 8,
    poll_interval: float = 0.1,
    delay: float = 0.0,
    host: str = "127.0.0.1",
) -> list[RateResult]:
    """Deliver the same updates by the four methods at each rate; measure each.

    At every rate, ``max(min_updates, rate * seconds)`` updates are published
    on a fixed schedule while a poller, a long poller, an SSE client and a
    WebSocket client — each behind its own tap — receive them. Each tap adds
    ``delay`` seconds each way (:class:`~wsdemo.tap.proxy.Tap`), so a round
    trip costs what it would on a longer path. Bytes come from the taps;
    delays are receive time minus publish time on the same clock.
    """
    results: list[RateResult] = []
    server = await UpdateServer.start(host=host)
    feed = server.feed
    try:
        for rate in rates:
            count = max(min_updates, round(rate * seconds))
            results += await _measure_one(server, feed, rate, count, poll_interval, delay, host)
    finally:
        await server.close()
    return results


async def _measure_one(
    server: UpdateServer, feed: UpdateFeed, rate: float, count: int, poll_interval: float,
    delay: float, host: str,
) -> list[RateResult]:
    taps = {m: await Tap((host, server.port), host=host, delay=delay).start() for m in METHODS}
    start = feed.seq
    target = start + count
    poller = Poller(host, taps["polling"].port, feed, after=start)
    long_poller = LongPoller(host, taps["long polling"].port, feed, after=start)
    streamer = EventStreamReceiver(host, taps["SSE"].port, feed, after=start, reconnect=False)
    pusher = PushReceiver(host, taps["WebSocket"].port, feed, after=start)
    clients: list[Any] = [poller, long_poller, streamer, pusher]
    await streamer.connect()
    await pusher.connect()
    budget = count / rate + 10.0
    try:
        runs = [
            asyncio.ensure_future(poller.run(target, poll_interval)),
            asyncio.ensure_future(long_poller.run(target)),
            asyncio.ensure_future(feed.publish_at(rate, count)),
        ]
        await asyncio.wait_for(asyncio.gather(*runs), budget)
        await streamer.wait_for_seq(target, timeout=5)
        await pusher.wait_for_seq(target, timeout=5)
    finally:
        for client in clients:
            await client.close()
        for tap in taps.values():
            with contextlib.suppress(TimeoutError):
                await tap.wait_closed(timeout=5)
            await tap.close()
    out = []
    for method, client in zip(METHODS, clients, strict=True):
        capture = taps[method].capture
        if method == "WebSocket":
            exchanges = len([m for m in capture.frames if m.frame.close is None])
            nbytes = transport_bytes(capture)
        elif method == "SSE":
            exchanges = len(client.deliveries)
            nbytes = sse_transport_bytes(capture)
        else:
            exchanges = len([m for m in capture.http if m.http.is_request])
            nbytes = transport_bytes(capture)
        out.append(
            RateResult(
                method=method,
                rate=rate,
                updates=count,
                bytes_per_update=nbytes / count,
                delays=tuple(d.delay for d in client.deliveries),
                exchanges=exchanges,
                added_delay=delay,
            )
        )
    return out


_COLOURS = {"polling": "#1f77b4", "long polling": "#2ca02c", "SSE": "#9467bd",
            "WebSocket": "#ff7f0e"}


def plot_rates(results: list[RateResult], axes: Any = None) -> Any:
    """Bytes per update and delay per update against the update rate, one line per method.

    Bytes on a log axis (they span 50 to 1000), labelled in plain numbers;
    delay on a linear axis, the median with a bar from the 25th to the 75th
    percentile, and the delay the tap added drawn as the floor no method
    can beat.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    all_rates = sorted({r.rate for r in results})
    methods = [m for m in METHODS if any(r.method == m for r in results)]
    for k, method in enumerate(methods):
        rows = [r for r in results if r.method == method]
        rates = [r.rate for r in rows]
        colour = _COLOURS[method]
        axes[0].plot(rates, [r.bytes_per_update for r in rows], "o-", color=colour, label=method)
        # a small sideways offset per method keeps the bars from covering each other
        shift = [x * (1 + 0.03 * (k - (len(methods) - 1) / 2)) for x in rates]
        med = [r.median_delay * 1000 for r in rows]
        lo = [m - r.delay_quantile(0.25) * 1000 for m, r in zip(med, rows, strict=True)]
        hi = [r.delay_quantile(0.75) * 1000 - m for m, r in zip(med, rows, strict=True)]
        axes[1].errorbar(shift, med, yerr=[lo, hi], fmt="o-", color=colour, capsize=3,
                         label=method)
    added = max((r.added_delay for r in results), default=0.0) * 1000
    if added:
        axes[1].axhline(added, color="0.4", ls="--", lw=1)
        axes[1].text(all_rates[0], added * 0.93, f"one-way delay added by the tap ({added:g} ms)",
                     va="top", fontsize=8, color="0.3")
    axes[0].set_yscale("log")
    low = min(r.bytes_per_update for r in results)
    high = max(r.bytes_per_update for r in results)
    ticks = [t for t in (20, 50, 100, 200, 500, 1000, 2000, 5000) if low / 1.5 <= t <= high * 1.5]
    axes[0].yaxis.set_major_locator(FixedLocator(ticks))
    axes[0].yaxis.set_minor_locator(NullLocator())
    axes[0].set_yticklabels([f"{t:g}" for t in ticks])
    axes[0].set_ylim(low / 1.5, high * 1.5)
    axes[1].set_ylim(0, None)
    axes[0].set_title("Bytes on the wire per update (log scale)", fontsize=10)
    axes[1].set_title("Delay from publish to client: median, 25th–75th percentile",
                      fontsize=10)
    axes[0].set_ylabel("bytes per update")
    axes[1].set_ylabel("delay (ms)")
    for ax in axes:
        ax.set_xlabel("updates per second (log scale)")
        ax.set_xscale("log")
        # plain numbers at the measured rates read better than powers of ten
        ax.set_xticks(all_rates, [f"{r:g}" for r in all_rates])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
    # one legend for both panels, under them, where it covers no point
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
                          frameon=False)
    axes[0].figure.tight_layout(rect=(0, 0.07, 1, 1))
    return axes


def _span(values: list[float]) -> str:
    lo, hi = round(min(values)), round(max(values))
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def conclusions(results: list[RateResult]) -> str:
    """What a run of :func:`measure_rates` showed, as sentences a learner reads.

    Each sentence is a comparison checked on the results. The byte counts of
    SSE and WebSocket depend only on the updates' sequence numbers, so they are
    printed; everything that depends on timing is stated as a comparison, and
    a comparison that did not hold is said so, with the numbers.
    """
    rates = sorted({r.rate for r in results})
    by = {(r.method, r.rate): r for r in results}
    added = max(r.added_delay for r in results) * 1000
    lines = ["Bytes per update (all but the once-per-connection handshakes):"]
    ws = [by["WebSocket", r].bytes_per_update for r in rates]
    sse = [by["SSE", r].bytes_per_update for r in rates]
    lines.append(f"  WebSocket: {_span(ws)} B at every rate: the update and a 2-byte frame "
                 "header.")
    lines.append(f"  SSE: {_span(sse)} B at every rate: the update, its 'id:' and 'data:' "
                 "lines, and the HTTP chunk around it.")
    ratio = by["polling", rates[0]].bytes_per_update / by["WebSocket", rates[0]].bytes_per_update
    falls = (by["polling", rates[0]].bytes_per_update
             > by["polling", rates[-1]].bytes_per_update)
    lines.append(
        (f"  Polling: more than 3 times WebSocket's cost at {rates[0]:g} updates/s, where most "
         "polls come back empty" if ratio > 3 else
         f"  Polling: only {ratio:.1f} times WebSocket's cost at {rates[0]:g} updates/s")
        + ("; cheaper per update at the highest rate." if falls else
           "; NOT cheaper per update at the highest rate."))
    cheaper = all(by["WebSocket", r].bytes_per_update < by[m, r].bytes_per_update
                  for r in rates for m in METHODS if m != "WebSocket")
    lines.append("  WebSocket was the cheapest at every rate." if cheaper else
                 "  WebSocket was NOT the cheapest at every rate.")
    lines.append("")
    lines.append(f"Delay from publish to client (medians; the tap added {added:g} ms each way):")
    near = [m for m in ("SSE", "WebSocket")
            if all(by[m, r].median_delay * 1000 < added + 20 for r in rates)]
    if near == ["SSE", "WebSocket"]:
        lines.append(f"  SSE and WebSocket: within 20 ms of the {added:g} ms one-way delay at "
                     "every rate. A push costs one trip.")
    else:
        late = [m for m in ("SSE", "WebSocket") if m not in near]
        lines.append(f"  {' and '.join(late)}: more than 20 ms above the one-way delay at some "
                     "rate.")
    slow = all(by["polling", r].median_delay > by[m, r].median_delay + 0.04
               for r in rates for m in ("SSE", "WebSocket"))
    lines.append("  Polling: more than 40 ms slower than either push at every rate: an update "
                 "waits for the next poll." if slow else
                 "  Polling: not always 40 ms slower than push.")
    round_trip = 2 * added / 1000
    rare = [r for r in rates if round_trip and 1 / r > round_trip]
    busy = [r for r in rates if round_trip and 1 / r < round_trip / 2]
    if rare and busy:
        same = all(by["long polling", r].median_delay < by["WebSocket", r].median_delay + 0.02
                   for r in rare)
        behind = all(by["long polling", r].median_delay > by["WebSocket", r].median_delay + 0.025
                     for r in busy)
        rare_text = ", ".join(f"{r:g}" for r in rare)
        busy_text = ", ".join(f"{r:g}" for r in busy)
        lines.append(
            f"  Long polling: {'as fast as push (within 20 ms)' if same else 'slower than push'}"
            f" at {rare_text} updates/s, rarer than one per round trip; "
            f"{'more than 25 ms behind push' if behind else 'not clearly behind push'} at "
            f"{busy_text}/s, where updates arrive while the next request is on its way.")
    return "\n".join(lines)


class UnsolicitedResponder:
    """An HTTP/1.1 server that tries to speak first — to show that it cannot.

    It answers each request normally (body ``answer to <target>``), and
    :meth:`push` writes a complete ``200 OK`` response that no request asked
    for onto every idle connection. The bytes arrive; HTTP/1.1 has no way to
    say what they answer, so the client pairs them with its *next* request.

    :meth:`hold` keeps the real answers back until :meth:`release`. A client
    that reads with a buffer (``http.client`` does) takes whatever has arrived
    in one read and throws away what it did not parse; holding the real answer
    back makes a demonstration show the same thing on every run.
    """

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._answering = asyncio.Event()
        self._answering.set()
        self.port = 0

    def hold(self) -> None:
        """Answer no request until :meth:`release`."""
        self._answering.clear()

    def release(self) -> None:
        self._answering.set()

    async def start(self, host: str = "127.0.0.1") -> UnsolicitedResponder:
        self._server = await asyncio.start_server(self._serve, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @staticmethod
    def response(body: str) -> bytes:
        data = body.encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )

    def push(self, body: str) -> int:
        """Write an unrequested response on every open connection; returns how many."""
        for writer in self._writers:
            writer.write(self.response(body))
        return len(self._writers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        requests = HttpStreamSplitter(requests=True)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                requests.receive(data)
                while (request := requests.next_message()) is not None:
                    await asyncio.wait_for(self._answering.wait(), 60)
                    writer.write(self.response(f"answer to {request.target}"))
                    await writer.drain()
        except (ConnectionError, TimeoutError):
            return
        finally:
            self._writers.remove(writer)
            writer.close()

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)


class StdlibClient:
    """The standard library's keep-alive client (``http.client``), awaitable.

    ``http.client`` blocks, so each request runs in a worker thread; the
    connection object is used by one request at a time.
    """

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=timeout)
        self.timeout = timeout

    async def get(self, target: str) -> str:
        """``GET target``; returns the body of the response ``http.client`` reads for it."""
        return await asyncio.wait_for(asyncio.to_thread(self._get, target), self.timeout + 1)

    def _get(self, target: str) -> str:
        self.connection.request("GET", target)
        return self.connection.getresponse().read().decode()

    def close(self) -> None:
        self.connection.close()
