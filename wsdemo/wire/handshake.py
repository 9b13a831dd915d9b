"""The opening handshake: an HTTP/1.1 Upgrade request and its 101 answer (RFC 6455 §4).

The client sends (§4.1)::

    GET /chat HTTP/1.1
    Host: server.example.com
    Upgrade: websocket
    Connection: Upgrade
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
    Sec-WebSocket-Version: 13

and the server agrees (§4.2.2)::

    HTTP/1.1 101 Switching Protocols
    Upgrade: websocket
    Connection: Upgrade
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=

The empty line that ends each head is the protocol boundary: the parsers below
stop exactly there and hand every byte after it over as ``trailing_data`` — the
first WebSocket frames (the model is h11's ``trailing_data``).

Why one file of this length: both sides of RFC 6455 §4, the request and the
response, each parsed and built, so a lesson reads the whole handshake in one place.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Collection, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .buffer import Buffer, Pump
from .errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from .explain import Field, render_html, render_text

__all__ = [
    "GUID",
    "HandshakeRequest",
    "HandshakeResponse",
    "RequestParser",
    "ResponseParser",
    "accept_key",
    "build_refusal",
    "build_request",
    "build_response",
    "check_request",
    "check_response",
    "generate_key",
    "read_request",
    "read_response",
    "select_subprotocol",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The fixed string a server appends to the client's key (§1.3, §4.2.2)."""

MAX_LINE = 8192
MAX_HEADERS = 128

Headers = tuple[tuple[str, str], ...]

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

_PHRASES = {
    101: "Switching Protocols", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 426: "Upgrade Required", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}


def generate_key(nonce: bytes | None = None) -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64-encoded (§4.1 item 7).

    Pass ``nonce`` to make it deterministic (the RFC's sample nonce is
    ``b"the sample nonce"``).
    """
    nonce = os.urandom(16) if nonce is None else nonce
    if len(nonce) != 16:
        raise LocalProtocolError("the key's nonce is 16 bytes (§4.1)")
    return base64.b64encode(nonce).decode("ascii")


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``key``: base64(SHA-1(key + GUID)) (§1.3, §4.2.2).

    >>> accept_key("dGhlIHNhbXBsZSBub25jZQ==")
    's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens(values: Iterable[str]) -> list[str]:
    """Split comma-separated header values into tokens (RFC 7230 §7 list syntax)."""
    return [token.strip(" \t") for value in values for token in value.split(",")
            if token.strip(" \t")]


class _Head:
    """Header lookup shared by requests and responses (names are case-insensitive)."""

    headers: Headers

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]

    def header(self, name: str) -> str | None:
        """The value of a header that must occur once; None if absent.

        Raises :class:`RemoteProtocolError` if it occurs more than once.
        """
        values = self.header_values(name)
        if len(values) > 1:
            raise HandshakeError(f"{name} header occurs {len(values)} times")
        return values[0] if values else None

    def _header_rows(self, start: int, meanings: dict[str, str]) -> list[Field]:
        return [Field(f"{start + i}", "", name, value, meanings.get(name.lower(), ""))
                for i, (name, value) in enumerate(self.headers)]


def _serialize_head(first_line: str, headers: Headers) -> bytes:
    parts = [first_line, *(part for header in headers for part in header)]
    if any(c in part for part in parts for c in "\r\n\0"):
        raise LocalProtocolError("CR, LF or NUL inside a header would split the head")
    text = first_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError("HTTP heads carry latin-1 text only") from None


_REQUEST_MEANINGS = {
    "host": "the server's authority (§4.1 item 4)",
    "upgrade": "asks to leave HTTP for WebSocket (§4.1 item 5)",
    "connection": "Upgrade: this hop must act on Upgrade (§4.1 item 6)",
    "sec-websocket-key": "16 random bytes, base64 (§4.1 item 7)",
    "sec-websocket-version": "13 is the only version (§4.1 item 9)",
    "sec-websocket-protocol": "subprotocols offered, in preference order (§4.1 item 10)",
    "sec-websocket-extensions": "extensions offered (§4.1 item 11)",
    "origin": "the page's origin, sent by browsers (§4.1 item 8, §10.2)",
}

_RESPONSE_MEANINGS = {
    "upgrade": "the switch to WebSocket is accepted (§4.2.2)",
    "connection": "Upgrade (§4.2.2)",
    "sec-websocket-accept": "base64(SHA-1(key + GUID)): proves a WebSocket server (§4.2.2)",
    "sec-websocket-protocol": "the subprotocol the server chose (§4.2.2)",
    "sec-websocket-version": "the versions this server speaks (§4.4)",
    "sec-websocket-extensions": "extensions in use (§9.1)",
}


@dataclass(frozen=True)
class HandshakeRequest(_Head):
    """The client's opening handshake (§4.1) — also the event a server receives."""

    target: str = "/"
    headers: Headers = ()
    method: str = "GET"
    version: str = "HTTP/1.1"

    @property
    def key(self) -> str | None:
        return self.header("Sec-WebSocket-Key")

    @property
    def subprotocols(self) -> list[str]:
        """Offered subprotocols, across every ``Sec-WebSocket-Protocol`` header."""
        return _tokens(self.header_values("Sec-WebSocket-Protocol"))

    @property
    def origin(self) -> str | None:
        return self.header("Origin")

    def serialize(self) -> bytes:
        return _serialize_head(f"{self.method} {self.target} {self.version}", self.headers)

    def fields(self) -> list[Field]:
        rows = [Field("1", "", "request line", f"{self.method} {self.target} {self.version}",
                      "GET, HTTP/1.1 or higher (§4.1 items 1-2)")]
        rows += self._header_rows(2, _REQUEST_MEANINGS)
        rows.append(Field(str(len(self.headers) + 2), "", "(empty line)", "",
                          "end of the head: the client now waits for the 101"))
        return rows

    def explain(self) -> str:
        return render_text("WebSocket opening handshake: request", self.fields(), "line")

    def _repr_html_(self) -> str:
        return render_html("WebSocket opening handshake: request", self.fields(), "line")


@dataclass(frozen=True)
class HandshakeResponse(_Head):
    """The server's answer (§4.2.2): 101 to switch, anything else refuses."""

    status: int = 101
    reason: str = "Switching Protocols"
    headers: Headers = ()
    version: str = "HTTP/1.1"
    body: bytes = b""  # only for building refusals; a parser leaves it in trailing_data

    @property
    def accept(self) -> str | None:
        return self.header("Sec-WebSocket-Accept")

    @property
    def subprotocol(self) -> str | None:
        return self.header("Sec-WebSocket-Protocol")

    def serialize(self) -> bytes:
        head = _serialize_head(f"{self.version} {self.status} {self.reason}", self.headers)
        return head + self.body

    def fields(self) -> list[Field]:
        meaning = ("101: after this head the connection carries WebSocket frames (§4.2.2)"
                   if self.status == 101 else "not 101: the upgrade is refused (§4.1)")
        rows = [Field("1", "", "status line", f"{self.version} {self.status} {self.reason}",
                      meaning)]
        rows += self._header_rows(2, _RESPONSE_MEANINGS)
        rows.append(Field(str(len(self.headers) + 2), "", "(empty line)", "",
                          "end of HTTP: the next byte is a WebSocket frame" if self.status == 101
                          else "end of the head; a body may follow"))
        return rows

    def explain(self) -> str:
        return render_text("WebSocket opening handshake: response", self.fields(), "line")

    def _repr_html_(self) -> str:
        return render_html("WebSocket opening handshake: response", self.fields(), "line")


# ---------------------------------------------------------------- parsing


def _read_head_lines(buffer: Buffer, status: int | None) -> Generator[None, None, list[str]]:
    """Read the lines of an HTTP head up to the empty line that ends it."""
    lines: list[str] = []
    while True:
        try:
            raw = yield from buffer.read_line(MAX_LINE)
        except RemoteProtocolError as exc:
            raise HandshakeError(exc.reason, status=status) from None
        if not raw:
            return lines
        if len(lines) > MAX_HEADERS:
            raise HandshakeError(f"more than {MAX_HEADERS} header lines",
                                 status=431 if status else None)
        # latin-1 maps every byte: validity is checked per part by the callers.
        lines.append(raw.decode("latin-1"))


def _parse_headers(lines: Sequence[str], status: int | None) -> Headers:
    headers = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            raise HandshakeError("obsolete line folding in headers (RFC 7230 §3.2.4)", status)
        name, colon, value = line.partition(":")
        if not colon or not name or not set(name) <= _TCHAR:
            raise HandshakeError(f"malformed header line {line[:40]!r}", status)
        value = value.strip(" \t")
        if any(c < " " and c != "\t" or c == "\x7f" for c in value):
            raise HandshakeError(f"control character in the {name} header", status)
        headers.append((name, value))
    return tuple(headers)


def _check_http_version(version: str, status: int | None) -> None:
    major, dot, minor = version[5:].partition(".")
    if not (version.startswith("HTTP/") and dot and major.isdigit() and minor.isdigit()
            and major.isascii() and minor.isascii()):
        raise HandshakeError(f"malformed HTTP version {version[:20]!r}", status)


def _version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version[5:].partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return (0, 0)


def read_request(buffer: Buffer) -> Generator[None, None, HandshakeRequest]:
    """Parse an HTTP request head from ``buffer`` (§4.2.1 reads it, RFC 7230 §3 shapes it).

    Only the syntax is checked here; :func:`check_request` decides whether it
    is a valid WebSocket upgrade.
    """
    lines = yield from _read_head_lines(buffer, status=400)
    if not lines:
        raise HandshakeError("empty request line", 400)
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HandshakeError(f"malformed request line {lines[0][:60]!r}", 400)
    method, target, version = parts
    if not method or not set(method) <= _TCHAR:
        raise HandshakeError(f"malformed method {method[:20]!r}", 400)
    if not target or not target.isascii() or not target.isprintable():
        raise HandshakeError("malformed request target", 400)
    _check_http_version(version, 400)
    return HandshakeRequest(target, _parse_headers(lines[1:], 400), method, version)


def read_response(buffer: Buffer) -> Generator[None, None, HandshakeResponse]:
    """Parse an HTTP response head from ``buffer`` (the client side of §4.1).

    Errors carry ``status=None``: a client has no HTTP answer to give.
    """
    lines = yield from _read_head_lines(buffer, status=None)
    if not lines:
        raise HandshakeError("empty status line", None)
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    _check_http_version(version, None)
    if len(code) != 3 or not code.isdigit() or not code.isascii():
        raise HandshakeError(f"malformed status line {lines[0][:60]!r}", None)
    return HandshakeResponse(int(code), reason, _parse_headers(lines[1:], None), version=version)


T = TypeVar("T")


class _HeadParser(Generic[T]):
    def __init__(self) -> None:
        self._buffer = Buffer()
        self._pump: Pump[T] = Pump(self._reader(self._buffer))
        self.error: HandshakeError | None = None

    def _reader(self, buffer: Buffer) -> Generator[None, None, T]:
        raise NotImplementedError

    def feed(self, data: bytes) -> T | None:
        """Add bytes; return the head the first time it is complete, else None.

        Bytes fed after the head are kept in :attr:`trailing_data`.
        """
        if self.error is not None:
            raise self.error
        if self._pump.done:
            self._buffer.feed(data)
            return None
        self._buffer.feed(data)
        try:
            done = self._pump.resume()
        except HandshakeError as exc:
            self.error = exc
            raise
        return self._pump.result if done else None

    def feed_eof(self) -> None:
        """The peer closed the stream: fail if the head was not complete."""
        self._buffer.feed_eof()
        if not self._pump.done:
            self.feed(b"")

    @property
    def head(self) -> T | None:
        """The parsed head, once complete."""
        return self._pump.result

    @property
    def head_size(self) -> int | None:
        """How many bytes the head took, once complete (where trailing data starts)."""
        return self._buffer.consumed if self._pump.done else None

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the end of the head: they belong to the next protocol."""
        return self._buffer.peek() if self._pump.done else b""

    def take_trailing_data(self) -> bytes:
        """Remove and return :attr:`trailing_data` (hand it to the frame parser)."""
        return self._buffer.take_all() if self._pump.done else b""


class RequestParser(_HeadParser[HandshakeRequest]):
    """Incremental parser of the client's handshake (server side).

    >>> parser = RequestParser()
    >>> parser.feed(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n\\x81")
    HandshakeRequest(target='/', headers=(('Host', 'a'),), method='GET', version='HTTP/1.1')
    >>> parser.trailing_data
    b'\\x81'
    """

    def _reader(self, buffer: Buffer) -> Generator[None, None, HandshakeRequest]:
        return read_request(buffer)


class ResponseParser(_HeadParser[HandshakeResponse]):
    """Incremental parser of the server's handshake answer (client side)."""

    def _reader(self, buffer: Buffer) -> Generator[None, None, HandshakeResponse]:
        return read_response(buffer)


# ---------------------------------------------------------------- client side


def build_request(
    host: str,
    target: str = "/",
    *,
    key: str | None = None,
    subprotocols: Sequence[str] = (),
    origin: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> HandshakeRequest:
    """The client's opening handshake (§4.1). ``key`` is injectable for tests."""
    headers = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", generate_key() if key is None else key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if subprotocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if origin is not None:
        headers.append(("Origin", origin))
    headers += extra_headers
    request = HandshakeRequest(target, tuple(headers))
    request.serialize()  # refuse now, not on the wire, what cannot be sent
    return request


def check_response(request: HandshakeRequest, response: HandshakeResponse) -> str | None:
    """Validate the server's answer as §4.1 (items 1-6 of the client's checks) says.

    Returns the subprotocol the server chose (or None). Raises
    :class:`HandshakeError` with ``status=None``: the client must fail the
    connection.
    """
    def fail(reason: str) -> HandshakeError:
        return HandshakeError(reason, status=None)

    if response.status != 101:
        raise fail(f"server refused the upgrade: {response.status} {response.reason}")
    if "websocket" not in [t.lower() for t in _tokens(response.header_values("Upgrade"))]:
        raise fail("101 without Upgrade: websocket")
    if "upgrade" not in [t.lower() for t in _tokens(response.header_values("Connection"))]:
        raise fail("101 without Connection: Upgrade")
    key = request.key
    if key is None or response.header_values("Sec-WebSocket-Accept") != [accept_key(key)]:
        raise fail("Sec-WebSocket-Accept does not match our key")
    if response.header_values("Sec-WebSocket-Extensions"):
        raise fail("server chose an extension we did not offer")
    chosen = _tokens(response.header_values("Sec-WebSocket-Protocol"))
    if len(chosen) > 1:
        raise fail("server chose more than one subprotocol")
    if chosen and chosen[0] not in request.subprotocols:
        raise fail(f"server chose subprotocol {chosen[0]!r}, which we did not offer")
    return chosen[0] if chosen else None


# ---------------------------------------------------------------- server side


def check_request(
    request: HandshakeRequest, allowed_origins: Collection[str] | None = None
) -> None:
    """Validate a client's opening handshake as §4.2.1 says; raise :class:`HandshakeError`.

    The error's ``status``/``headers`` are the refusal to send: 405 for a
    method other than GET, 426 with ``Upgrade: websocket`` when the request
    is not an upgrade, 426 with ``Sec-WebSocket-Version: 13`` for another
    version (§4.4), 403 for an Origin outside ``allowed_origins`` (§10.2),
    400 for anything else malformed. A request without Origin is allowed:
    only browsers send it, and cross-site hijacking needs a browser.
    """
    if request.method != "GET":
        raise HandshakeError(f"method {request.method} is not GET (§4.1)", 405,
                             (("Allow", "GET"),))
    if _version_tuple(request.version) < (1, 1):
        raise HandshakeError(f"{request.version} is older than HTTP/1.1 (§4.1)", 400)
    if not request.header("Host"):
        raise HandshakeError("missing Host header (§4.1 item 4)", 400)
    upgrade_headers = (("Upgrade", "websocket"), ("Connection", "Upgrade"))
    if "websocket" not in [t.lower() for t in _tokens(request.header_values("Upgrade"))]:
        raise HandshakeError("not a WebSocket upgrade: Upgrade: websocket is missing", 426,
                             upgrade_headers)
    if "upgrade" not in [t.lower() for t in _tokens(request.header_values("Connection"))]:
        raise HandshakeError("not a WebSocket upgrade: Connection: Upgrade is missing", 426,
                             upgrade_headers)
    key = request.key
    if key is None:
        raise HandshakeError("missing Sec-WebSocket-Key (§4.1 item 7)", 400)
    try:
        nonce = base64.b64decode(key.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        nonce = b""
    if len(nonce) != 16:
        raise HandshakeError("Sec-WebSocket-Key is not 16 bytes in base64 (§4.1 item 7)", 400)
    version = request.header("Sec-WebSocket-Version")
    if version is None:
        raise HandshakeError("missing Sec-WebSocket-Version (§4.1 item 9)", 400)
    if version != "13":
        raise HandshakeError(f"unsupported Sec-WebSocket-Version {version[:20]!r} (§4.4)", 426,
                             (("Sec-WebSocket-Version", "13"),))
    origin = request.origin
    if allowed_origins is not None and origin is not None and origin not in allowed_origins:
        raise HandshakeError(f"origin {origin[:80]!r} is not allowed (§10.2)", 403)


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first subprotocol the client offered that the server supports (§4.2.2 item 5.4).

    The client lists them in its order of preference (§4.1 item 10), so its
    order wins.
    """
    for name in offered:
        if name in supported:
            return name
    return None


def build_response(
    request: HandshakeRequest,
    subprotocol: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> HandshakeResponse:
    """The ``101 Switching Protocols`` answer to a valid request (§4.2.2)."""
    key = request.key
    if key is None:
        raise LocalProtocolError("cannot accept a request without Sec-WebSocket-Key")
    if subprotocol is not None and subprotocol not in request.subprotocols:
        raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered (§4.2.2)")
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol is not None:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    headers += extra_headers
    return HandshakeResponse(101, "Switching Protocols", tuple(headers))


def build_refusal(
    status: int, reason: str = "", headers: Iterable[tuple[str, str]] = ()
) -> HandshakeResponse:
    """An HTTP answer that refuses the upgrade, with ``reason`` as a plain-text body."""
    if not 400 <= status <= 599:
        raise LocalProtocolError(f"a refusal is a 4xx or 5xx status, not {status}")
    body = (reason + "\n").encode("utf-8") if reason else b""
    all_headers = (
        *headers,
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    )
    return HandshakeResponse(status, _PHRASES.get(status, "Error"), all_headers, body=body)
