"""One stream of updates, three ways to deliver it: polling, long polling, push.

Lesson 02 puts the tap in front of each and compares what crosses the wire.

* **Polling** over one keep-alive connection: the client asks
  ``GET /poll?after=N`` every ``interval`` seconds and gets what is new (often
  nothing). Keep-alive saves the TCP handshake; it does not change who speaks
  first — always the client.
* **Long polling**: ``GET /long-poll?after=N`` and the server holds the answer
  until there is something new. Still one request per response: the server
  can only answer, so between an answer and the next request it is mute.
* **Push**: one WebSocket; the server sends a text frame per update whenever
  it has one.

Every update is the same JSON object ``{"seq": n, "data": "..."}`` with a
fixed-size ``data``, so bytes on the wire depend only on the exchanges, not on
the content. :class:`UnsolicitedResponder` shows what happens when a server
*tries* to speak first over HTTP/1.1.

Why one file of this length: lesson 02's polling, long-polling and WebSocket servers
and their client, kept together so the lesson compares like with like.
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
import tornado.netutil
import tornado.web
import tornado.websocket

from ..tap.capture import Capture
from ..tap.http import HttpMessage, HttpStreamSplitter
from ..tap.proxy import Tap

__all__ = [
    "Delivery",
    "KeepAliveClient",
    "LongPoller",
    "METHODS",
    "Poller",
    "PushReceiver",
    "RateResult",
    "StdlibClient",
    "Update",
    "UpdateFeed",
    "UpdateServer",
    "UnsolicitedResponder",
    "measure_rates",
    "plot_rates",
    "transport_bytes",
]

log = logging.getLogger(__name__)

METHODS = ("polling", "long polling", "push")


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


class _PushHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, feed: UpdateFeed) -> None:
        self.feed = feed
        self._unsubscribe: Callable[[], None] | None = None

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

    ``/poll``, ``/long-poll`` (HTTP) and ``/push`` (WebSocket), on a random
    loopback port unless ``port`` is given.
    """

    def __init__(self, feed: UpdateFeed, http_server: tornado.httpserver.HTTPServer,
                 port: int) -> None:
        self.feed = feed
        self._http_server = http_server
        self.port = port

    @classmethod
    async def start(
        cls, feed: UpdateFeed | None = None, port: int = 0, host: str = "127.0.0.1"
    ) -> UpdateServer:
        feed = feed or UpdateFeed()
        app = tornado.web.Application(
            [
                ("/poll", _PollHandler, {"feed": feed}),
                ("/long-poll", _LongPollHandler, {"feed": feed}),
                ("/push", _PushHandler, {"feed": feed}),
            ]
        )
        sockets = tornado.netutil.bind_sockets(port, host)
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        return cls(feed, server, sockets[0].getsockname()[1])

    async def close(self) -> None:
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
        if self._writer is None or self._reader is None:
            await self.connect()
        assert self._writer is not None and self._reader is not None
        self._writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        )
        self.requests_sent += 1
        self._responses.expect_response_to("GET")
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

    async def close(self) -> None:
        if self.ws is not None:
            # a clean close handshake: Close frame both ways, code 1000
            self.ws.close(1000)
            if self._reading is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(self._reading, 5)
            self.ws = None


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
    exchanges: int  # request/response pairs (HTTP) or frames (push)

    @property
    def median_delay(self) -> float:
        return statistics.median(self.delays)


async def measure_rates(
    rates: Iterable[float],
    *,
    seconds: float = 1.0,
    min_updates: int = 8,
    poll_interval: float = 0.1,
    host: str = "127.0.0.1",
) -> list[RateResult]:
    """Deliver the same updates by the three methods at each rate; measure each.

    At every rate, ``max(min_updates, rate * seconds)`` updates are published
    on a fixed schedule while a poller, a long poller and a push client —
    each behind its own tap — receive them. Bytes come from the taps; delays
    are receive time minus publish time on the same clock.
    """
    results: list[RateResult] = []
    server = await UpdateServer.start(host=host)
    feed = server.feed
    try:
        for rate in rates:
            count = max(min_updates, round(rate * seconds))
            results += await _measure_one(server, feed, rate, count, poll_interval, host)
    finally:
        await server.close()
    return results


async def _measure_one(
    server: UpdateServer, feed: UpdateFeed, rate: float, count: int, poll_interval: float,
    host: str,
) -> list[RateResult]:
    taps = {m: await Tap((host, server.port), host=host).start() for m in METHODS}
    start = feed.seq
    target = start + count
    poller = Poller(host, taps["polling"].port, feed, after=start)
    long_poller = LongPoller(host, taps["long polling"].port, feed, after=start)
    pusher = PushReceiver(host, taps["push"].port, feed, after=start)
    await pusher.connect()
    budget = count / rate + 10.0
    try:
        runs = [
            asyncio.ensure_future(poller.run(target, poll_interval)),
            asyncio.ensure_future(long_poller.run(target)),
            asyncio.ensure_future(feed.publish_at(rate, count)),
        ]
        await asyncio.wait_for(asyncio.gather(*runs), budget)
        await pusher.wait_for_seq(target, timeout=5)
    finally:
        for client in (poller, long_poller, pusher):
            await client.close()
        for tap in taps.values():
            with contextlib.suppress(TimeoutError):
                await tap.wait_closed(timeout=5)
            await tap.close()
    out = []
    for method, client in zip(METHODS, (poller, long_poller, pusher), strict=True):
        capture = taps[method].capture
        exchanges = (
            len([m for m in capture.http if m.http.is_request])
            if method != "push"
            else len([m for m in capture.frames if m.frame.close is None])
        )
        out.append(
            RateResult(
                method=method,
                rate=rate,
                updates=count,
                bytes_per_update=transport_bytes(capture) / count,
                delays=tuple(d.delay for d in client.deliveries),
                exchanges=exchanges,
            )
        )
    return out


def plot_rates(results: list[RateResult], axes: Any = None) -> Any:
    """Bytes per update and median delay per update against the update rate."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {"polling": "#1f77b4", "long polling": "#2ca02c", "push": "#ff7f0e"}
    for method in METHODS:
        rows = [r for r in results if r.method == method]
        rates = [r.rate for r in rows]
        axes[0].plot(rates, [r.bytes_per_update for r in rows], "o-", color=colours[method],
                     label=method)
        axes[1].plot(rates, [r.median_delay * 1000 for r in rows], "o-", color=colours[method],
                     label=method)
    axes[0].set_ylabel("bytes on the wire per update")
    axes[1].set_ylabel("median delay per update (ms)")
    all_rates = sorted({r.rate for r in results})
    for ax in axes:
        ax.set_xlabel("updates per second")
        ax.set_xscale("log")
        ax.set_yscale("log")
        # plain numbers at the measured rates read better than powers of ten
        ax.set_xticks(all_rates, [f"{r:g}" for r in all_rates])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].figure.tight_layout()
    return axes


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
