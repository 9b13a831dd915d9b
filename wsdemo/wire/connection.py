"""One WebSocket connection as a sans-I/O state machine (RFC 6455 §4-§7).

The caller owns the socket; the connection owns the rules::

    conn.receive_data(bytes_from_socket)      # or conn.receive_eof()
    for event in conn.events_received(): ...  # what the peer did
    socket.send(conn.data_to_send())          # what the rules say to send back

``send_text``/``send_binary``/``ping``/``pong``/``close`` queue outgoing frames;
a client masks them (§5.3), a server does not.

When the peer breaks the protocol, the connection does what §7.1.7 ("Fail the
WebSocket Connection") prescribes by itself — it queues a Close frame with the
right code (or, during the handshake, the HTTP refusal), moves to CLOSED and
reports a :class:`ConnectionFailed` event carrying the
:class:`~wsdemo.wire.errors.RemoteProtocolError`. The caller then sends what is
queued and closes the TCP connection. Misuse of the API raises
:class:`~wsdemo.wire.errors.LocalProtocolError` at once.

Messages that were complete before the error are not lost: if the same bytes
carried a message and then the error, :meth:`Connection.events_received`
returns the message(s) first, with the connection still OPEN so the caller
may answer them (an echo), and the *next* call fails the connection
(:attr:`Connection.failure_pending` says one is waiting). wsproto gets the
same order by parsing lazily as its events are iterated; Autobahn's cases
3.2, 4.1.3 or 5.15 check it. Text is validated as it arrives — across
fragments and across partial reads of one frame — so invalid UTF-8 fails at
the first impossible byte (§8.1), not when the frame is complete.

The states and what moves between them are one table, :data:`TRANSITIONS`.

Why one file of this length: it is the whole state machine of a connection, and one
file owns it (h11's rule), so the table of states is read in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from .errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from .frames import (
    CloseCode,
    Frame,
    FrameParser,
    Opcode,
    Utf8Validator,
    is_valid_close_code,
    parse_close,
    serialize_close,
)
from .handshake import (
    HandshakeRequest,
    HandshakeResponse,
    RequestParser,
    ResponseParser,
    build_refusal,
    build_request,
    build_response,
    check_request,
    check_response,
    select_subprotocol,
)

__all__ = [
    "BinaryMessage",
    "ClientConnection",
    "Close",
    "Connection",
    "ConnectionFailed",
    "Event",
    "Ping",
    "Pong",
    "Role",
    "ServerConnection",
    "State",
    "TRANSITIONS",
    "TextMessage",
]

DEFAULT_MAX_SIZE = 2**20


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class State(Enum):
    """Connection states (§4.1 CONNECTING/OPEN, §7.1.3 CLOSING, §7.1.4 CLOSED)."""

    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


TRANSITIONS: dict[tuple[State, str], State] = {
    # The 101 was sent (server) or received and checked (client).
    (State.CONNECTING, "handshake accepted"): State.OPEN,
    (State.CONNECTING, "handshake refused"): State.CLOSED,
    (State.CONNECTING, "transport closed"): State.CLOSED,
    # We start the closing handshake and wait for the peer's Close (§7.1.2).
    (State.OPEN, "send close"): State.CLOSING,
    # The peer starts it: we answer with a Close at once, so we are done (§5.5.1).
    (State.OPEN, "receive close"): State.CLOSED,
    (State.CLOSING, "receive close"): State.CLOSED,
    (State.OPEN, "protocol error"): State.CLOSED,
    (State.CLOSING, "protocol error"): State.CLOSED,
    (State.OPEN, "transport closed"): State.CLOSED,
    (State.CLOSING, "transport closed"): State.CLOSED,
}
"""(state, what happened) → next state. Anything missing cannot happen."""


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class TextMessage:
    """A complete text message (§5.6), reassembled from its fragments (§5.4)."""

    data: str
    frames: tuple[Frame, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class BinaryMessage:
    """A complete binary message (§5.6), reassembled from its fragments (§5.4)."""

    data: bytes
    frames: tuple[Frame, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Ping:
    """The peer sent a Ping (§5.5.2); the connection already queued the Pong."""

    payload: bytes = b""
    frame: Frame | None = field(default=None, compare=False, repr=False)

    def response(self) -> Pong:
        """The Pong that answers this Ping: same payload (§5.5.3)."""
        return Pong(self.payload)


@dataclass(frozen=True)
class Pong:
    """The peer sent a Pong (§5.5.3)."""

    payload: bytes = b""
    frame: Frame | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Close:
    """The peer sent a Close frame (§5.5.1); 1005 means it gave no code (§7.1.5)."""

    code: int
    reason: str = ""
    frame: Frame | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ConnectionFailed:
    """The peer broke the protocol, or vanished; the connection is CLOSED.

    ``error.close_code`` is the code already queued in a Close frame (1006:
    the TCP connection ended without a closing handshake, nothing to send);
    for a :class:`HandshakeError` on the server side the HTTP refusal is queued.
    """

    error: RemoteProtocolError


Event = (HandshakeRequest | HandshakeResponse | TextMessage | BinaryMessage | Ping | Pong | Close
         | ConnectionFailed)


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


class Connection:
    """What client and server share once the handshake is done (§5-§7).

    Use :class:`ClientConnection` or :class:`ServerConnection`.
    """

    def __init__(
        self,
        role: Role,
        *,
        max_size: int | None = DEFAULT_MAX_SIZE,
        mask_source: Callable[[], bytes] | None = None,
    ) -> None:
        self.role = role
        self.state = State.CONNECTING
        self.max_size = max_size
        self.subprotocol: str | None = None
        self.close_received: Close | None = None
        self.close_sent: tuple[int | None, str] | None = None
        self.failure: RemoteProtocolError | None = None
        # §5.3: the masking key must be unpredictable; tests inject a fixed one.
        self._mask_source = mask_source or (lambda: os.urandom(4))
        # §5.1: a server requires masked frames, a client requires unmasked ones.
        self._frames = FrameParser(expect_masked=role is Role.SERVER, max_size=max_size,
                                   on_header=self._frame_started,
                                   on_payload=self._payload_received)
        self._events: list[Event] = []
        self._outgoing = bytearray()
        self._message_opcode: int | None = None
        self._message_frames: list[Frame] = []
        self._text_parts: list[str] = []
        self._binary_parts: list[bytes] = []
        self._message_size = 0
        self._utf8 = Utf8Validator()
        # an error found after complete messages: reported once they are delivered
        self._deferred_failure: RemoteProtocolError | None = None

    # ------------------------------------------------------------ I/O side

    @property
    def failure_pending(self) -> bool:
        """True when a protocol error waits behind messages not yet answered:
        the next :meth:`events_received` (or :meth:`receive_data`, :meth:`close`)
        fails the connection."""
        return self._deferred_failure is not None

    def _fail_deferred(self) -> None:
        if self._deferred_failure is not None:
            error, self._deferred_failure = self._deferred_failure, None
            self._fail(error)

    def receive_data(self, data: bytes) -> None:
        """Bytes the peer sent, in any chunking."""
        self._fail_deferred()
        if self.state is State.CONNECTING:
            self._receive_handshake(data)
        elif self.state is not State.CLOSED:
            self._receive_frames(data)
        # Bytes after the closing handshake or a failure are ignored (§5.5.1, §7.1.7).

    def receive_eof(self) -> None:
        """The peer closed the TCP connection (or it broke)."""
        self._fail_deferred()
        if self.state is State.CLOSED:
            return
        reason = ("TCP connection closed during the opening handshake"
                  if self.state is State.CONNECTING
                  else "TCP connection closed without a closing handshake (§7.1.5)")
        error = RemoteProtocolError(reason, close_code=CloseCode.ABNORMAL_CLOSURE)
        self.failure = error
        self._events.append(ConnectionFailed(error))
        self._move("transport closed")

    def events_received(self) -> list[Event]:
        """The events since the last call, oldest first.

        A failure found behind complete messages comes in the call after the
        one that returned those messages (see the module's docstring).
        """
        if not self._events:
            self._fail_deferred()
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        """The bytes to write to the socket since the last call."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    # ------------------------------------------------------------ API side

    def send_text(self, text: str, fragment_size: int | None = None) -> None:
        """Queue a text message, cut in fragments of ``fragment_size`` bytes if given (§5.4).

        A fragment may end inside a UTF-8 character: only the whole message
        must be valid UTF-8 (§5.6).
        """
        self._send_message(Opcode.TEXT, text.encode("utf-8"), fragment_size)

    def send_binary(self, data: bytes, fragment_size: int | None = None) -> None:
        """Queue a binary message, fragmented like :meth:`send_text`."""
        self._send_message(Opcode.BINARY, bytes(data), fragment_size)

    def ping(self, payload: bytes = b"") -> None:
        """Queue a Ping (§5.5.2); the peer must answer with a Pong of the same payload."""
        self._send_control(Opcode.PING, payload)

    def pong(self, payload: bytes = b"") -> None:
        """Queue an unsolicited Pong (§5.5.3): a one-way heartbeat."""
        self._send_control(Opcode.PONG, payload)

    def close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2): queue a Close, then wait for the peer's.

        With a failure pending, that failure's Close (1002, 1007, ...) is sent instead.
        """
        if self._deferred_failure is not None:
            self._fail_deferred()
            return
        self._require_open("close")
        payload = serialize_close(code, reason)
        self._send_frame(Frame(Opcode.CLOSE, payload))
        self.close_sent = (code, reason)
        self._move("send close")

    def send_frame(self, frame: Frame) -> None:
        """Queue one frame as it is (masked if we are a client), checking *no* rule.

        For demonstrations of a peer that breaks the protocol.
        """
        self._send_frame(frame)

    # ------------------------------------------------------------ internals

    def _move(self, what: str) -> None:
        self.state = TRANSITIONS[(self.state, what)]

    def _require_open(self, action: str) -> None:
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"cannot {action} in state {self.state.value}")

    def _send_frame(self, frame: Frame) -> None:
        if self.role is Role.CLIENT:
            frame = replace(frame, mask=self._mask_source())
        self._outgoing += frame.serialize()

    def _send_message(self, opcode: Opcode, payload: bytes, fragment_size: int | None) -> None:
        self._require_open("send a message")
        if fragment_size is not None and fragment_size < 1:
            raise LocalProtocolError("fragment_size must be at least 1")
        size = fragment_size or max(len(payload), 1)
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        for i, chunk in enumerate(chunks):
            self._send_frame(Frame(opcode if i == 0 else Opcode.CONT, chunk,
                                   fin=i == len(chunks) - 1))

    def _send_control(self, opcode: Opcode, payload: bytes) -> None:
        self._require_open(f"send a {opcode.name}")
        if len(payload) > 125:
            raise LocalProtocolError("control frame payload longer than 125 bytes (§5.5)")
        self._send_frame(Frame(opcode, bytes(payload)))

    def _receive_handshake(self, data: bytes) -> None:
        raise NotImplementedError

    def _receive_frames(self, data: bytes) -> None:
        self._frames.feed(data)
        try:
            for frame in self._frames.frames():
                self._receive_frame(frame)
                if self.state is State.CLOSED:
                    break
        except RemoteProtocolError as error:
            if any(isinstance(event, (TextMessage, BinaryMessage)) for event in self._events):
                self._deferred_failure = error  # deliver the messages first
            else:
                self._fail(error)

    def _fail(self, error: RemoteProtocolError) -> None:
        """Fail the WebSocket connection (§7.1.7): send a Close with the code, stop."""
        if self.state is State.OPEN:
            # 1005/1006/1015 only report; they may not travel in a Close frame (§7.4.1).
            code = error.close_code if is_valid_close_code(error.close_code) else 1002
            payload = serialize_close(code, _truncate_utf8(error.reason, 123))
            self._send_frame(Frame(Opcode.CLOSE, payload))
            self.close_sent = (code, error.reason)
        self.failure = error
        self._events.append(ConnectionFailed(error))
        self._move("protocol error")

    def _receive_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode == Opcode.PING:
            self._events.append(Ping(frame.payload, frame))
            # §5.5.2: answer "as soon as practical" — also between the
            # fragments of a message; not after we sent a Close (§5.5.1).
            if self.state is State.OPEN:
                self._send_frame(Frame(Opcode.PONG, frame.payload))
        elif opcode == Opcode.PONG:
            self._events.append(Pong(frame.payload, frame))
        elif opcode == Opcode.CLOSE:
            code, reason = parse_close(frame.payload)
            self.close_received = Close(code, reason, frame)
            self._events.append(self.close_received)
            if self.state is State.OPEN:
                # §5.5.1: answer with a Close, "typically echoing the status code".
                echo = None if code == CloseCode.NO_STATUS_RCVD else code
                self._send_frame(Frame(Opcode.CLOSE, serialize_close(echo)))
                self.close_sent = (echo, "")
            self._move("receive close")
        else:
            self._receive_data_frame(frame)

    def _frame_started(self, frame: Frame, length: int) -> None:
        """A frame's header is in (the parser already checked its §5 rules):
        the message rules (§5.4) and the size limit, before the payload arrives."""
        if Opcode(frame.opcode).is_control:
            return
        if frame.opcode == Opcode.CONT:
            if self._message_opcode is None:
                raise RemoteProtocolError("continuation frame without a message to continue (§5.4)")
        elif self._message_opcode is not None:
            raise RemoteProtocolError("new data message inside a fragmented one (§5.4)")
        else:
            self._message_opcode = frame.opcode
            self._utf8 = Utf8Validator()
        if self.max_size is not None and self._message_size + length > self.max_size:
            raise RemoteProtocolError(f"message longer than {self.max_size} bytes", 1009)

    def _payload_received(self, frame: Frame, piece: bytes) -> None:
        # Validate as the bytes arrive: a fragment, or this read, may end inside
        # a character, but an impossible byte fails at once (§8.1).
        if self._message_opcode == Opcode.TEXT and not Opcode(frame.opcode).is_control:
            self._text_parts.append(self._utf8.decode(piece))

    def _receive_data_frame(self, frame: Frame) -> None:
        self._message_size += len(frame.payload)
        self._message_frames.append(frame)
        if self._message_opcode == Opcode.TEXT:
            if frame.fin:
                self._text_parts.append(self._utf8.decode(b"", final=True))
        else:
            self._binary_parts.append(frame.payload)
        if frame.fin:
            frames = tuple(self._message_frames)
            if self._message_opcode == Opcode.TEXT:
                event: Event = TextMessage("".join(self._text_parts), frames)
            else:
                event = BinaryMessage(b"".join(self._binary_parts), frames)
            self._events.append(event)
            self._message_opcode = None
            self._message_frames = []
            self._text_parts = []
            self._binary_parts = []
            self._message_size = 0


class ServerConnection(Connection):
    """The server's side: receive the Upgrade request, accept or refuse it, then frames.

    ``subprotocols``: the ones this server speaks, for :meth:`accept` to
    choose from. ``allowed_origins``: if given, a browser's request from any
    other Origin is refused with 403 (§10.2).
    """

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        allowed_origins: Collection[str] | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
    ) -> None:
        super().__init__(Role.SERVER, max_size=max_size)
        self.subprotocols = tuple(subprotocols)
        self.allowed_origins = allowed_origins
        self.request: HandshakeRequest | None = None
        self.response: HandshakeResponse | None = None
        self._head = RequestParser()

    def _receive_handshake(self, data: bytes) -> None:
        if self.request is not None:
            # Frames sent before our 101 (a client may pipeline them) wait here.
            self._head.feed(data)
            return
        try:
            request = self._head.feed(data)
            if request is None:
                return
            check_request(request, self.allowed_origins)
        except HandshakeError as error:
            self._refuse(error)
            return
        self.request = request
        self._events.append(request)

    def _refuse(self, error: HandshakeError) -> None:
        self.response = build_refusal(error.status or 400, error.reason, error.headers)
        self._outgoing += self.response.serialize()
        self.failure = error
        self._events.append(ConnectionFailed(error))
        self._move("handshake refused")

    def accept(
        self, subprotocol: str | None = None, extra_headers: Iterable[tuple[str, str]] = ()
    ) -> HandshakeResponse:
        """Answer ``101 Switching Protocols`` (§4.2.2) and start reading frames.

        ``subprotocol=None`` picks the first offered one this server supports.
        """
        if self.state is not State.CONNECTING or self.request is None:
            raise LocalProtocolError(f"nothing to accept in state {self.state.value}")
        if subprotocol is None:
            subprotocol = select_subprotocol(self.request.subprotocols, self.subprotocols)
        self.response = build_response(self.request, subprotocol, extra_headers)
        self.subprotocol = subprotocol
        self._outgoing += self.response.serialize()
        self._move("handshake accepted")
        # The protocol switch: whatever followed the HTTP head is WebSocket frames.
        self._receive_frames(self._head.take_trailing_data())
        return self.response

    def reject(self, status: int = 403, reason: str = "") -> HandshakeResponse:
        """Refuse a well-formed request (e.g. not authorised) with an HTTP status."""
        if self.state is not State.CONNECTING or self.request is None:
            raise LocalProtocolError(f"nothing to reject in state {self.state.value}")
        self.response = build_refusal(status, reason)
        self._outgoing += self.response.serialize()
        self._move("handshake refused")
        return self.response


class ClientConnection(Connection):
    """The client's side: the Upgrade request is queued at once (§4.1).

    ``key`` and ``mask_source`` are injectable so that a lesson or a test
    gets the same bytes every run.
    """

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        key: str | None = None,
        subprotocols: Sequence[str] = (),
        origin: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        max_size: int | None = DEFAULT_MAX_SIZE,
        mask_source: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(Role.CLIENT, max_size=max_size, mask_source=mask_source)
        self.request = build_request(host, target, key=key, subprotocols=subprotocols,
                                     origin=origin, extra_headers=extra_headers)
        self.response: HandshakeResponse | None = None
        self._head = ResponseParser()
        self._outgoing += self.request.serialize()

    def _receive_handshake(self, data: bytes) -> None:
        try:
            response = self._head.feed(data)
            if response is None:
                return
            self.response = response
            self.subprotocol = check_response(self.request, response)
        except HandshakeError as error:
            # §4.1: the client fails the connection; there is nothing to send.
            self.failure = error
            self._events.append(ConnectionFailed(error))
            self._move("handshake refused")
            return
        self._events.append(response)
        self._move("handshake accepted")
        # The protocol switch: whatever followed the 101's head is WebSocket frames.
        self._receive_frames(self._head.take_trailing_data())
