"""The RFC 6455 wire codec, sans-I/O: bytes in, events and bytes out.

Written to *teach* what changes when a connection becomes WebSocket, and held
to the standard by tests against RFC 6455's own examples and against wsproto.
It imports no socket, asyncio or tornado: a lesson can feed it bytes by hand.

- :mod:`~wsdemo.wire.handshake` — the HTTP Upgrade request and its 101 answer (§4)
- :mod:`~wsdemo.wire.frames` — frames, masking, close payloads (§5, §7.4)
- :mod:`~wsdemo.wire.connection` — one connection's rules and states (§5-§7)
- :mod:`~wsdemo.wire.capture` — read a recorded byte stream: head + frames + offsets
- :mod:`~wsdemo.wire.errors` — whose fault: ``LocalProtocolError`` vs ``RemoteProtocolError``
- :mod:`~wsdemo.wire.explain` — the annotated field tables (text and HTML)

Errors say whose fault it was::

    WireError
    ├── LocalProtocolError     the caller misused the API; nothing was sent
    └── RemoteProtocolError    the peer broke RFC 6455; .close_code to send
        └── HandshakeError     bad opening handshake; .status/.headers of the
                               HTTP refusal (server side), status None (client)
"""

from __future__ import annotations

from .capture import CapturedFrame, CapturedHead, StreamDecoder, decode_stream
from .connection import (
    TRANSITIONS,
    BinaryMessage,
    ClientConnection,
    Close,
    Connection,
    ConnectionFailed,
    Event,
    Ping,
    Pong,
    Role,
    ServerConnection,
    State,
    TextMessage,
)
from .errors import HandshakeError, LocalProtocolError, RemoteProtocolError, WireError
from .explain import Field
from .frames import (
    CloseCode,
    Frame,
    FrameParser,
    Opcode,
    Utf8Validator,
    apply_mask,
    check_frame,
    check_header,
    is_valid_close_code,
    parse_close,
    serialize_close,
)
from .handshake import (
    GUID,
    HandshakeRequest,
    HandshakeResponse,
    RequestParser,
    ResponseParser,
    accept_key,
    build_refusal,
    build_request,
    build_response,
    check_request,
    check_response,
    generate_key,
    select_subprotocol,
)

__all__ = [
    "GUID",
    "TRANSITIONS",
    "BinaryMessage",
    "CapturedFrame",
    "CapturedHead",
    "ClientConnection",
    "Close",
    "CloseCode",
    "Connection",
    "ConnectionFailed",
    "Event",
    "Field",
    "Frame",
    "FrameParser",
    "HandshakeError",
    "HandshakeRequest",
    "HandshakeResponse",
    "LocalProtocolError",
    "Opcode",
    "Ping",
    "Pong",
    "RemoteProtocolError",
    "RequestParser",
    "ResponseParser",
    "Role",
    "ServerConnection",
    "State",
    "StreamDecoder",
    "TextMessage",
    "Utf8Validator",
    "WireError",
    "accept_key",
    "apply_mask",
    "build_refusal",
    "build_request",
    "build_response",
    "check_frame",
    "check_header",
    "check_request",
    "check_response",
    "decode_stream",
    "generate_key",
    "is_valid_close_code",
    "parse_close",
    "select_subprotocol",
    "serialize_close",
]
