"""A Python client of the control channel (asyncio, on Tornado's WebSocket client).

    client = await ControlClient.connect("ws://127.0.0.1:8765/ws", client="notebook")
    snapshot = await client.join("controls")
    ack = await client.set("controls", "speed", 7)        # waits for the ack
    event = await client.next_event("controls")           # waits for an event

Every wait is bounded (``timeout``, 5 s by default) and raises
:class:`TimeoutError` rather than hanging. A server ``error`` reply to a request
raises :class:`ServerError`; a closed connection raises :class:`ConnectionClosed`
with the close code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from typing import Any
from urllib.parse import urlparse, urlunparse

import tornado.httpclient
import tornado.websocket

from ..core.protocol import SUBPROTOCOL

__all__ = ["ConnectError", "ConnectionClosed", "ControlClient", "ServerError", "normalize_url"]

logger = logging.getLogger("wsdemo.client")


class ServerError(Exception):
    """The server answered a request with an ``error`` message."""

    def __init__(self, reply: dict[str, Any]):
        super().__init__(f"{reply.get('code')}: {reply.get('message')}")
        self.reply = reply
        self.code = reply.get("code")


class ConnectionClosed(Exception):
    """The connection closed; ``code`` and ``reason`` are what the server sent."""

    def __init__(self, code: int | None, reason: str | None):
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class ConnectError(Exception):
    """The connection could not be opened; the message says why in one line."""


def normalize_url(url: str) -> str:
    """``host:port``, ``http://host:port/`` or ``ws://host:port/ws`` → the WebSocket URL."""
    if "://" not in url:
        url = "ws://" + url
    parts = urlparse(url)
    if parts.scheme not in ("ws", "wss", "http", "https"):
        raise ConnectError(f"bad URL {url!r}: the scheme must be ws, wss, http or https")
    if not parts.hostname:
        raise ConnectError(f"bad URL {url!r}: no host")
    try:
        _ = parts.port  # urlparse checks the port only when asked
    except ValueError:
        raise ConnectError(f"bad URL {url!r}: the port is not a number from 0 to 65535") from None
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path
    if not path.endswith("/ws"):
        path = path.rstrip("/") + "/ws"
    return urlunparse((scheme, parts.netloc, path, "", parts.query, ""))


class ControlClient:
    """One connection to a control server. Use :meth:`connect` to make one."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection, url: str,
                 timeout: float):
        self._conn = conn
        self.url = url
        self.timeout = timeout
        self.welcome: dict[str, Any] = {}
        self.session: str | None = None
        self.last_seq: dict[str, int] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.presence: dict[str, list[dict[str, Any]]] = {}
        # Every message, in order (the newest 10,000: a long watch must not grow forever).
        self.received: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.closed: ConnectionClosed | None = None
        self._pending: dict[str, asyncio.Future] = {}
        # Events wait here until read: all of them, and per room, so that waiting for
        # one room's event never throws away another room's.
        self._events: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._event_arrived = asyncio.Event()
        # None, at the end, stands for "closed": a waiting reader wakes up.
        self._messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(10_000)
        self._welcome: asyncio.Future = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str, *, client: str = "python", token: str | None = None,
                      timeout: float = 5.0, hello: bool = True,
                      resume: dict[str, int] | None = None,
                      epoch: str | None = None,
                      ssl_context: Any = None) -> ControlClient:
        """Open the WebSocket, send ``hello`` and wait for ``welcome``.

        ``ssl_context`` (an ``ssl.SSLContext``) verifies a ``wss://`` server, e.g.
        ``ssl.create_default_context(cafile=...)`` for a self-signed certificate;
        without it the system's certificate authorities do.

        ``resume`` maps rooms to the last seq seen there: the server replays what
        came after, then a ``recovered`` marker, then goes live.
        """
        ws_url = normalize_url(url)
        request = tornado.httpclient.HTTPRequest(ws_url, connect_timeout=timeout,
                                                 request_timeout=timeout,
                                                 ssl_options=ssl_context)
        try:
            conn = await asyncio.wait_for(
                tornado.websocket.websocket_connect(request, subprotocols=[SUBPROTOCOL]),
                timeout,
            )
        except ConnectionRefusedError:
            raise ConnectError(f"cannot connect to {ws_url}: connection refused "
                               "(is the server running?)") from None
        except TimeoutError:
            raise ConnectError(f"cannot connect to {ws_url}: no answer in {timeout:g} s "
                               "(timed out)") from None
        except tornado.httpclient.HTTPClientError as exc:
            if exc.code == 599:  # Tornado's own code for "no response": a time-out
                raise ConnectError(f"cannot connect to {ws_url}: no answer in {timeout:g} s "
                                   "(timed out)") from None
            raise ConnectError(f"cannot connect to {ws_url}: the server refused the "
                               f"upgrade with HTTP {exc.code}") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {ws_url}: {exc.strerror or exc}") from None
        self = cls(conn, ws_url, timeout)
        if hello:
            message: dict[str, Any] = {"type": "hello", "client": client}
            if token is not None:
                message["token"] = token
            if resume:
                message["resume"] = dict(resume)
                if epoch is not None:
                    message["epoch"] = epoch
            self.send(message)
            self.welcome = await self._wait(self._welcome)
            self.session = self.welcome.get("session")
        return self

    # --- requests ----------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Send one message as it is (no waiting for a reply)."""
        self.send_raw(json.dumps(message))

    def send_raw(self, data: str | bytes) -> None:
        if self.closed is not None:
            raise self.closed
        binary = isinstance(data, bytes)
        try:
            self._conn.write_message(data, binary=binary)
        except tornado.websocket.WebSocketClosedError:
            # Closed under us before the reader noticed: say it the same way.
            raise ConnectionClosed(self._conn.close_code, self._conn.close_reason) from None

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a message with an ``id`` and wait for the reply that carries it."""
        msg_id = message.setdefault("id", uuid.uuid4().hex)
        future = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            self.send(message)
            return await self._wait(future)
        finally:
            self._pending.pop(msg_id, None)

    async def join(self, room: str) -> dict[str, Any]:
        """Join ``room``; returns its snapshot (``seq``, ``state``, ``controls``)."""
        return await self.request({"type": "join", "room": room})

    async def leave(self, room: str) -> dict[str, Any]:
        return await self.request({"type": "leave", "room": room})

    async def set(self, room: str, target: str, value: Any, *, id: str | None = None
                  ) -> dict[str, Any]:
        """Set a control; returns the ``ack`` (``seq``, ``duplicate``)."""
        message = {"type": "set", "room": room, "target": target, "value": value}
        if id is not None:
            message["id"] = id
        return await self.request(message)

    async def publish(self, room: str, data: Any, *, id: str | None = None) -> dict[str, Any]:
        message = {"type": "publish", "room": room, "data": data}
        if id is not None:
            message["id"] = id
        return await self.request(message)

    # --- what arrives ------------------------------------------------------------

    async def next_event(self, room: str | None = None, *, timeout: float | None = None
                         ) -> dict[str, Any]:
        """The next unread ``event`` (of ``room``, if given), waiting at most ``timeout``.

        Events of other rooms stay unread for a later call.
        """
        loop = asyncio.get_running_loop()
        limit = self.timeout if timeout is None else timeout
        deadline = loop.time() + limit
        while True:
            for i, event in enumerate(self._events):
                if room is None or event.get("room") == room:
                    del self._events[i]
                    return event
            if self.closed is not None:
                raise self.closed
            self._event_arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no event from {self.url} within {limit:g} s")
            await self._wait(self._event_arrived.wait(), remaining)

    async def next_message(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The next message of any type, in arrival order; :class:`ConnectionClosed` at the end."""
        message = await self._wait(self._messages.get(), timeout)
        if message is None:
            self._messages.put_nowait(None)  # later calls see the end too
            assert self.closed is not None
            raise self.closed
        return message

    def abort(self) -> None:
        """Drop the TCP connection with no closing handshake, as a network failure would."""
        stream = getattr(self._conn, "stream", None) or getattr(
            getattr(self._conn, "protocol", None), "stream", None)
        if stream is not None:
            stream.close()

    async def wait_closed(self, timeout: float | None = None) -> ConnectionClosed:
        """Wait until the server closes the connection; returns code and reason."""
        await self._wait(asyncio.shield(self._reader), timeout)
        assert self.closed is not None
        return self.closed

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed is None and not self._reader.done():
            self._conn.close(code, reason)
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), self.timeout)
        except TimeoutError:
            self._reader.cancel()

    async def _wait(self, awaitable: Any, timeout: float | None = None) -> Any:
        timeout = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            raise TimeoutError(f"nothing from {self.url} within {timeout:g} s") from None

    async def _read(self) -> None:
        while True:
            text = await self._conn.read_message()
            if text is None:
                break
            try:
                message = json.loads(text)
            except ValueError:
                logger.warning("not JSON from the server: %.80r", text)
                continue
            self._receive(message)
        self.closed = ConnectionClosed(self._conn.close_code, self._conn.close_reason)
        if self._messages.full():
            self._messages.get_nowait()
        self._messages.put_nowait(None)
        self._event_arrived.set()  # a waiting next_event sees the close
        for future in [self._welcome, *self._pending.values()]:
            if not future.done():
                future.set_exception(self.closed)
        if not self._welcome.cancelled():
            self._welcome.exception()  # retrieved, so asyncio does not warn if nobody waits

    def _receive(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        if self._messages.full():
            self._messages.get_nowait()  # nobody reads them: keep the newest
        self._messages.put_nowait(message)
        kind = message.get("type")
        if kind == "welcome" and not self._welcome.done():
            self._welcome.set_result(message)
        elif kind == "event":
            self.last_seq[message["room"]] = message["seq"]
            self._events.append(message)
            self._event_arrived.set()
        elif kind == "recovered":
            self.last_seq[message["room"]] = message["to"]
        elif kind == "snapshot":
            self.snapshots[message["room"]] = message
            self.last_seq[message["room"]] = message["seq"]
        elif kind == "presence":
            self.presence[message["room"]] = message["members"]
        elif (kind == "error" and "id" not in message and not self._welcome.done()
              and message.get("code") != "closing"):  # a close follows: ConnectionClosed
            self._welcome.set_exception(ServerError(message))
        msg_id = message.get("id")
        if msg_id is not None and kind in ("ack", "snapshot", "left", "error"):
            future = self._pending.get(msg_id)
            if future is not None and not future.done():
                if kind == "error":
                    future.set_exception(ServerError(message))
                else:
                    future.set_result(message)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ControlClient {self.session or '?'} {state} rooms={sorted(self.last_seq)}>"
