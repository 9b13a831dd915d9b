"""WebSocket over one stream of an HTTP/2 connection (RFC 8441), sans-I/O.

HTTP/2 (RFC 9113) has no ``Upgrade`` and no ``101`` (RFC 9113 §8.6). RFC 8441
uses a stream instead of the whole connection:

1. The server's SETTINGS carry ``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`` (id 0x8,
   §3). Before it has seen that, a client may not use what follows.
2. The client opens a stream with an *extended CONNECT* (§4): ``:method CONNECT``,
   ``:protocol websocket``, ``:scheme``, ``:path`` and ``:authority``, plus
   ``sec-websocket-version`` and, if it likes, ``sec-websocket-protocol`` (§5).
   There is no ``Sec-WebSocket-Key``: the ``:protocol`` field does its job.
3. The server agrees with ``:status 200`` (§5). Any other answer is a refusal.
4. From then on the stream's DATA frames carry RFC 6455 frames, unchanged, "as if
   [the stream] were the TCP connection" (§5): the client still masks. END_STREAM
   stands for the TCP close, RST_STREAM (CANCEL) for a reset.

The other streams of the connection go on carrying ordinary HTTP requests.

HTTP/2 itself is the ``h2`` library (python-hyper, sans-I/O: it imports no socket,
like this module). This module adds the RFC 8441 rules h2 leaves to its user, and
runs the course's own codec, :class:`~wsdemo.wire.connection.Connection`, on each
WebSocket stream::

    conn.receive_data(bytes_from_socket)
    for event in conn.events_received(): ...
    socket.send(conn.data_to_send())

Why one file of this length: the client and the server are two halves of one
exchange (SETTINGS, the extended CONNECT, its answer, the stream's end) and share
its rules; each half is short.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from .connection import DEFAULT_MAX_SIZE, Connection, Event, Role, State
from .errors import LocalProtocolError
from .handshake import select_subprotocol

__all__ = [
    "ENABLE_CONNECT_PROTOCOL",
    "H2Client",
    "H2Server",
    "ConnectionEnded",
    "Refused",
    "RequestReceived",
    "ResponseReceived",
    "WebSocketEnded",
    "WebSocketMessage",
    "WebSocketOpened",
    "WebSocketRequested",
    "WebSocketStream",
]

ENABLE_CONNECT_PROTOCOL = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
"""SETTINGS_ENABLE_CONNECT_PROTOCOL, setting id 0x8 (RFC 8441 §3, §9.1)."""

_PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR
_CANCEL = h2.errors.ErrorCodes.CANCEL


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class WebSocketRequested:
    """Server side: a valid extended CONNECT for ``websocket``; call ``accept`` or ``reject``."""

    stream_id: int
    path: str
    authority: str
    subprotocols: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = field(repr=False)


@dataclass(frozen=True)
class WebSocketOpened:
    """Client side: the server answered ``:status 200``; the stream is a WebSocket (OPEN)."""

    stream_id: int
    subprotocol: str | None
    headers: tuple[tuple[str, str], ...] = field(repr=False)


@dataclass(frozen=True)
class Refused:
    """A stream refused: a WebSocket that did not open (an HTTP status, or a reset),
    or an ordinary message whose body was over ``max_size`` (reset with CANCEL).

    ``status`` is the answer's ``:status`` (None if the stream was reset);
    ``error_code`` the RST_STREAM code (None if there was an answer). The server
    reports its own refusals too, so the caller can see why.
    """

    stream_id: int
    status: int | None
    error_code: int | None
    reason: str


@dataclass(frozen=True)
class WebSocketMessage:
    """Something the codec read on a WebSocket stream: a wire ``Event`` (text, close, ...)."""

    stream_id: int
    event: Event


@dataclass(frozen=True)
class WebSocketEnded:
    """The peer ended its half of a WebSocket stream (END_STREAM: its "TCP close")."""

    stream_id: int


@dataclass(frozen=True)
class RequestReceived:
    """Server side: an ordinary HTTP request, complete; answer with ``respond``."""

    stream_id: int
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes = b""


@dataclass(frozen=True)
class ResponseReceived:
    """Client side: the complete answer to an ordinary request."""

    stream_id: int
    status: int
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes = b""


@dataclass(frozen=True)
class ConnectionEnded:
    """The HTTP/2 connection is over (GOAWAY sent or received); ``error_code`` 0 is clean."""

    error_code: int
    reason: str


H2Event = (WebSocketRequested | WebSocketOpened | Refused | WebSocketMessage | WebSocketEnded
           | RequestReceived | ResponseReceived | ConnectionEnded)


# ---------------------------------------------------------------- a WebSocket on a stream


class WebSocketStream(Connection):
    """The course's codec on one HTTP/2 stream: OPEN from its first byte (RFC 8441 §5).

    The opening handshake happened in HTTP/2 HEADERS, so there is nothing for
    the codec's handshake parser to read; frames, masking, fragmentation, ping
    and the closing handshake are RFC 6455's, unchanged.
    """

    def __init__(
        self,
        role: Role,
        stream_id: int,
        subprotocol: str | None,
        *,
        max_size: int | None = DEFAULT_MAX_SIZE,
        mask_source: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(role, max_size=max_size, mask_source=mask_source)
        self.stream_id = stream_id
        self.subprotocol = subprotocol
        self._move("handshake accepted")

    def _receive_handshake(self, data: bytes) -> None:  # pragma: no cover - never CONNECTING
        raise LocalProtocolError("a WebSocket stream has no HTTP/1.1 handshake")


def _text(headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)


def _get(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k == name), None)


def _tokens(value: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (value or "").split(",") if t.strip())


class _Endpoint:
    """What client and server share: the h2 connection, flow control, the streams."""

    def __init__(self, *, client_side: bool, max_size: int | None) -> None:
        config = h2.config.H2Configuration(client_side=client_side, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.max_size = max_size
        self.websockets: dict[int, WebSocketStream] = {}
        self.ended = False
        self._events: list[H2Event] = []
        self._bodies: dict[int, bytearray] = {}
        self._heads: dict[int, tuple[tuple[str, str], ...]] = {}
        self._half_closed: set[int] = set()  # streams whose END_STREAM we sent
        self._peer_ended: set[int] = set()  # streams whose END_STREAM we received
        self._pending: dict[int, bytearray] = {}  # stream -> bytes waiting for window
        self._end_after_pending: set[int] = set()

    # ------------------------------------------------------------ I/O side

    def receive_data(self, data: bytes) -> None:
        """Bytes the peer sent, in any chunking."""
        if self.ended:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY (PROTOCOL_ERROR): the connection is over.
            self.ended = True
            self._events.append(ConnectionEnded(int(_PROTOCOL_ERROR), str(exc)))
            return
        for event in events:
            self._handle(event)

    def events_received(self) -> list[H2Event]:
        """The events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        """The bytes to write to the socket since the last call."""
        return self.h2.data_to_send()

    # ------------------------------------------------------------ API side

    def websocket(self, stream_id: int) -> WebSocketStream:
        """The codec of a WebSocket stream (its ``state``, ``close_received``, ...)."""
        try:
            return self.websockets[stream_id]
        except KeyError:
            raise LocalProtocolError(f"stream {stream_id} is not a WebSocket stream") from None

    def send_text(self, stream_id: int, text: str) -> None:
        """Queue a text message on a WebSocket stream, in DATA frames."""
        self.websocket(stream_id).send_text(text)
        self._flush(stream_id)

    def send_binary(self, stream_id: int, data: bytes) -> None:
        self.websocket(stream_id).send_binary(data)
        self._flush(stream_id)

    def close_websocket(self, stream_id: int, code: int = 1000, reason: str = "") -> None:
        """Start RFC 6455's closing handshake on the stream (a Close frame in a DATA frame)."""
        self.websocket(stream_id).close(code, reason)
        self._flush(stream_id)

    def goodbye(self) -> None:
        """End the whole HTTP/2 connection cleanly (GOAWAY NO_ERROR)."""
        self.h2.close_connection()
        self.ended = True

    # ------------------------------------------------------------ internals

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._give_back(event.stream_id, event.flow_controlled_length)
            ws = self.websockets.get(event.stream_id)
            if ws is not None:
                self._websocket_data(ws, event.data)
            elif event.stream_id in self._bodies:
                self._collect(event.stream_id, event.data)
        elif isinstance(event, h2.events.StreamEnded):
            self._stream_ended(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._stream_reset(event.stream_id, int(event.error_code))
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id in list(self._pending):
                self._send_pending(stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.ended = True
            reason = (event.additional_data or b"").decode("utf-8", "replace")
            self._events.append(ConnectionEnded(int(event.error_code), reason))
        else:
            self._handle_headers(event)

    def _handle_headers(self, event: h2.events.Event) -> None:
        raise NotImplementedError

    def _collect(self, stream_id: int, data: bytes) -> None:
        """Keep an ordinary message's body, up to ``max_size``; past it, drop the stream."""
        body = self._bodies[stream_id]
        if self.max_size is not None and len(body) + len(data) > self.max_size:
            del self._bodies[stream_id]
            self._heads.pop(stream_id, None)
            self._body_too_large(stream_id)
            return
        body += data

    def _body_too_large(self, stream_id: int) -> None:
        self.h2.reset_stream(stream_id, _CANCEL)
        self._events.append(Refused(stream_id, None, int(_CANCEL),
                                    f"body longer than {self.max_size} bytes"))

    def _give_back(self, stream_id: int, n: int) -> None:
        # The bytes are consumed at once. h2 hands the credit back in WINDOW_UPDATE
        # frames only once half a window is used, so small messages cost none.
        if n:
            self.h2.acknowledge_received_data(n, stream_id)

    def _websocket_data(self, ws: WebSocketStream, data: bytes) -> None:
        ws.receive_data(data)
        for wire_event in ws.events_received():
            self._events.append(WebSocketMessage(ws.stream_id, wire_event))
        self._flush(ws.stream_id)

    def _stream_ended(self, stream_id: int) -> None:
        ws = self.websockets.get(stream_id)
        if ws is not None:
            self._peer_ended.add(stream_id)
            if ws.state is not State.CLOSED:
                ws.receive_eof()  # §5: END_STREAM is the TCP close of RFC 6455
                for wire_event in ws.events_received():
                    self._events.append(WebSocketMessage(stream_id, wire_event))
            self._events.append(WebSocketEnded(stream_id))
            self._flush(stream_id)

    def _stream_reset(self, stream_id: int, code: int) -> None:
        ws = self.websockets.get(stream_id)
        self._pending.pop(stream_id, None)
        self._end_after_pending.discard(stream_id)
        if ws is not None:
            ws.receive_eof()
            for wire_event in ws.events_received():
                self._events.append(WebSocketMessage(stream_id, wire_event))
            self._events.append(WebSocketEnded(stream_id))

    def _flush(self, stream_id: int) -> None:
        """Move what the stream's codec queued into DATA frames; end the stream when done."""
        ws = self.websockets.get(stream_id)
        if ws is None:
            return
        data = ws.data_to_send()
        if data:
            self._pending.setdefault(stream_id, bytearray()).extend(data)
        # The closing handshake is done (or the codec failed the connection): end our
        # half of the stream, as RFC 6455 closes TCP. The server does so at once; the
        # client waits for the server's END_STREAM, as §7.1.1 has the server close first.
        if (ws.state is State.CLOSED and stream_id not in self._half_closed
                and (ws.role is Role.SERVER or stream_id in self._peer_ended)):
            self._half_closed.add(stream_id)
            self._end_after_pending.add(stream_id)
        self._send_pending(stream_id)

    def _send_pending(self, stream_id: int) -> None:
        pending = self._pending.get(stream_id, bytearray())
        while pending:
            room = min(self.h2.local_flow_control_window(stream_id),
                       self.h2.max_outbound_frame_size)
            if room <= 0:
                return  # resumed by a WindowUpdated event
            chunk = bytes(pending[:room])
            del pending[:room]
            last = not pending and stream_id in self._end_after_pending
            self.h2.send_data(stream_id, chunk, end_stream=last)
            if last:
                self._end_after_pending.discard(stream_id)
        self._pending.pop(stream_id, None)
        if stream_id in self._end_after_pending:
            self._end_after_pending.discard(stream_id)
            self.h2.end_stream(stream_id)


# ---------------------------------------------------------------- the client


class H2Client(_Endpoint):
    """The client's side of an HTTP/2 connection that may open WebSocket streams.

    The connection preface and the client's SETTINGS are queued at once.
    ``mask_source`` is injectable so that a lesson or a test gets the same bytes
    every run (a real client must use unpredictable masks, RFC 6455 §5.3).
    """

    def __init__(
        self,
        authority: str,
        *,
        scheme: str = "http",
        max_size: int | None = DEFAULT_MAX_SIZE,
        mask_source: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(client_side=True, max_size=max_size)
        self.authority = authority
        self.scheme = scheme
        self.mask_source = mask_source
        self._opening: dict[int, tuple[str, ...]] = {}  # stream -> subprotocols offered
        self.h2.initiate_connection()

    @property
    def websocket_allowed(self) -> bool:
        """Has the server sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1? (RFC 8441 §3)"""
        return self.h2.remote_settings.enable_connect_protocol == 1

    def open_websocket(
        self,
        path: str,
        *,
        subprotocols: Sequence[str] = (),
        origin: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Send the extended CONNECT (RFC 8441 §4, §5) on a new stream; return its id.

        Raises :class:`LocalProtocolError` if the server has not allowed it yet:
        "Upon receipt of SETTINGS_ENABLE_CONNECT_PROTOCOL with a value of 1, a
        client MAY use the Extended CONNECT" (§3) — and not before.
        """
        if not self.websocket_allowed:
            raise LocalProtocolError(
                "the server has not sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3)")
        headers = [
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", self.scheme),
            (":path", path), (":authority", self.authority),
            ("sec-websocket-version", "13"),
        ]
        if subprotocols:
            headers.append(("sec-websocket-protocol", ", ".join(subprotocols)))
        if origin is not None:
            headers.append(("origin", origin))
        headers.extend(extra_headers)
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers)
        self._opening[stream_id] = tuple(subprotocols)
        return stream_id

    def request(self, method: str, path: str, headers: Iterable[tuple[str, str]] = ()) -> int:
        """Send an ordinary request without a body on a new stream; return its id."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [
            (":method", method), (":scheme", self.scheme), (":path", path),
            (":authority", self.authority), *headers,
        ], end_stream=True)
        self._bodies[stream_id] = bytearray()
        return stream_id

    def _handle_headers(self, event: h2.events.Event) -> None:
        if not isinstance(event, h2.events.ResponseReceived):
            return
        stream_id = event.stream_id
        headers = _text(event.headers)
        status = int(_get(headers, ":status") or 0)
        offered = self._opening.pop(stream_id, None)
        if offered is None:
            self._heads[stream_id] = headers
            return
        if status != 200:
            # §5: any status but 200 means the WebSocket did not open; the
            # answer may still have a body, read as an ordinary response.
            self._heads[stream_id] = headers
            self._bodies[stream_id] = bytearray()
            self._events.append(Refused(stream_id, status, None, f"status {status}"))
            return
        chosen = _get(headers, "sec-websocket-protocol")
        if chosen is not None and chosen not in offered:
            # RFC 6455 §4.1: fail the connection; here, the stream (CANCEL, RFC 8441 §5).
            self.h2.reset_stream(stream_id, _CANCEL)
            self._events.append(Refused(stream_id, status, int(_CANCEL),
                                        f"server chose subprotocol {chosen!r}, not offered"))
            return
        ws = WebSocketStream(Role.CLIENT, stream_id, chosen, max_size=self.max_size,
                             mask_source=self.mask_source)
        self.websockets[stream_id] = ws
        self._events.append(WebSocketOpened(stream_id, chosen, headers))

    def _stream_ended(self, stream_id: int) -> None:
        if stream_id in self._bodies:
            headers = self._heads.pop(stream_id, ())
            body = bytes(self._bodies.pop(stream_id))
            status = int(_get(headers, ":status") or 0)
            self._events.append(ResponseReceived(stream_id, status, headers, body))
            return
        super()._stream_ended(stream_id)

    def _stream_reset(self, stream_id: int, code: int) -> None:
        if self._opening.pop(stream_id, None) is not None:
            self._events.append(Refused(stream_id, None, code, f"stream reset, error code {code}"))
            return
        super()._stream_reset(stream_id, code)


# ---------------------------------------------------------------- the server


class H2Server(_Endpoint):
    """The server's side: ordinary requests, and WebSocket streams (RFC 8441).

    ``enable_websocket``: advertise SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 in the
    server's SETTINGS, queued at once (RFC 9113 §3.4 lets a server send them
    first). ``subprotocols``: the ones :meth:`accept` may choose.

    Refused without the caller's help, each reported as a :class:`Refused`:

    * a CONNECT with ``:protocol`` before the client has acknowledged SETTINGS
      that allow it, or on a server that does not allow it: reset with
      PROTOCOL_ERROR — what a server without RFC 8441 does with that malformed
      request (§3). The acknowledgement is how a server knows the client has
      read the setting: SETTINGS are acknowledged in order (RFC 9113 §6.5.3);
    * a ``:protocol`` other than ``websocket``: ``501`` (RFC 9220 §3 says so for HTTP/3);
    * a CONNECT without ``:protocol`` (a tunnel to ``:authority``, RFC 9113 §8.5):
      ``501``, this server is no proxy;
    * a ``sec-websocket-version`` other than ``13``: ``400`` with
      ``sec-websocket-version: 13`` (RFC 6455 §4.4).

    A malformed request (h2's checks: an extended CONNECT without ``:path``, a
    CONNECT with ``:path`` but no ``:protocol``, ...) ends the connection: h2
    answers it with GOAWAY (PROTOCOL_ERROR), reported as :class:`ConnectionEnded`.
    """

    def __init__(
        self,
        *,
        enable_websocket: bool = True,
        subprotocols: Sequence[str] = (),
        max_size: int | None = DEFAULT_MAX_SIZE,
    ) -> None:
        super().__init__(client_side=False, max_size=max_size)
        self.enable_websocket = enable_websocket
        self.subprotocols = tuple(subprotocols)
        self.settings_acknowledged = False
        self._requests: dict[int, WebSocketRequested] = {}
        self._early: dict[int, bytearray] = {}  # DATA that came before our 200
        self._early_credit: dict[int, int] = {}
        initial = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.h2.DEFAULT_MAX_HEADER_LIST_SIZE,
        }
        if enable_websocket:
            initial[ENABLE_CONNECT_PROTOCOL] = 1
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=initial)
        self.h2.initiate_connection()

    def accept(self, stream_id: int, subprotocol: str | None = None) -> WebSocketStream:
        """Answer ``:status 200`` (RFC 8441 §5): the stream is now a WebSocket, OPEN.

        ``subprotocol=None`` picks the first offered one this server speaks.
        """
        request = self._requests.pop(stream_id, None)
        if request is None:
            raise LocalProtocolError(f"no WebSocket request to accept on stream {stream_id}")
        if subprotocol is None:
            subprotocol = select_subprotocol(request.subprotocols, self.subprotocols)
        headers = [(":status", "200")]
        if subprotocol is not None:
            headers.append(("sec-websocket-protocol", subprotocol))
        self.h2.send_headers(stream_id, headers)
        ws = WebSocketStream(Role.SERVER, stream_id, subprotocol, max_size=self.max_size)
        self.websockets[stream_id] = ws
        early = self._early.pop(stream_id, None)
        self._give_back(stream_id, self._early_credit.pop(stream_id, 0))
        if early:
            self._websocket_data(ws, bytes(early))
        return ws

    def reject(self, stream_id: int, status: int = 403, reason: str = "") -> None:
        """Refuse a well-formed WebSocket request with an HTTP status (not 200)."""
        if self._requests.pop(stream_id, None) is None:
            raise LocalProtocolError(f"no WebSocket request to reject on stream {stream_id}")
        if status == 200:
            raise LocalProtocolError("200 accepts; use accept()")
        self._early.pop(stream_id, None)
        self._give_back(stream_id, self._early_credit.pop(stream_id, 0))
        self.respond(stream_id, status, reason.encode("utf-8"))

    def respond(
        self,
        stream_id: int,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer an ordinary request: HEADERS, then the body in DATA, END_STREAM."""
        self.h2.send_headers(stream_id, [(":status", str(status)), *headers,
                                         ("content-length", str(len(body)))],
                             end_stream=not body)
        if body:
            self._pending.setdefault(stream_id, bytearray()).extend(body)
            self._end_after_pending.add(stream_id)
            self._send_pending(stream_id)

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.SettingsAcknowledged):
            self.settings_acknowledged = True
        elif isinstance(event, h2.events.DataReceived) and event.stream_id in self._early:
            # Bytes before our answer wait, and their flow-control credit with them:
            # the client can send no more than one window before we decide.
            self._early[event.stream_id] += event.data
            self._early_credit[event.stream_id] = (self._early_credit.get(event.stream_id, 0)
                                                   + event.flow_controlled_length)
            return
        super()._handle(event)

    def _handle_headers(self, event: h2.events.Event) -> None:
        if not isinstance(event, h2.events.RequestReceived):
            return
        stream_id = event.stream_id
        headers = _text(event.headers)
        method = _get(headers, ":method") or ""
        protocol = _get(headers, ":protocol")
        if method != "CONNECT":
            self._heads[stream_id] = headers
            self._bodies[stream_id] = bytearray()
            return
        if protocol is None:
            self._refuse(stream_id, 501, "CONNECT without :protocol asks for a tunnel; "
                                         "this server is no proxy (RFC 9113 §8.5)")
        elif not (self.enable_websocket and self.settings_acknowledged):
            why = ("this server does not allow the extended CONNECT" if not self.enable_websocket
                   else "extended CONNECT before the client acknowledged our SETTINGS")
            self.h2.reset_stream(stream_id, _PROTOCOL_ERROR)
            self._events.append(Refused(stream_id, None, int(_PROTOCOL_ERROR),
                                        f"{why} (RFC 8441 §3)"))
        elif protocol != "websocket":
            self._refuse(stream_id, 501, f":protocol {protocol!r} is not supported")
        elif _get(headers, "sec-websocket-version") != "13":
            self._refuse(stream_id, 400, "sec-websocket-version must be 13 (RFC 6455 §4.4)",
                         [("sec-websocket-version", "13")])
        else:
            request = WebSocketRequested(
                stream_id, _get(headers, ":path") or "", _get(headers, ":authority") or "",
                _tokens(_get(headers, "sec-websocket-protocol")), headers)
            self._requests[stream_id] = request
            self._early[stream_id] = bytearray()
            self._events.append(request)

    def _refuse(self, stream_id: int, status: int, reason: str,
                headers: Iterable[tuple[str, str]] = ()) -> None:
        self._events.append(Refused(stream_id, status, None, reason))
        self.respond(stream_id, status, reason.encode("utf-8"), headers)

    def _stream_ended(self, stream_id: int) -> None:
        if stream_id in self._bodies:
            headers = self._heads.pop(stream_id, ())
            body = bytes(self._bodies.pop(stream_id))
            self._events.append(RequestReceived(
                stream_id, _get(headers, ":method") or "", _get(headers, ":path") or "",
                headers, body))
            return
        super()._stream_ended(stream_id)
