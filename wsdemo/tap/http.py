"""Split a captured HTTP/1.1 byte stream into messages — for the tap, not for serving.

Sans-I/O. The wire codec (:mod:`wsdemo.wire`) parses the one request and the
one response of a WebSocket handshake. The tap also watches connections that
never upgrade: a keep-alive connection carries request, response, request,
response... each with a body whose length is given by ``Content-Length`` or by
chunked transfer coding (RFC 9112 §6.3). This module finds those boundaries so
the tap can count bytes per message and stop exactly at the end of a ``101``,
handing what follows to the frame parser (the "trailing data" of h11).

It is lenient where a server is strict: it is a viewer, so it reports what it
cannot parse (:class:`HttpSplitError`) and lets the caller show the rest as raw
bytes instead of refusing the connection.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from ..wire.errors import WireError
from ..wire.handshake import HandshakeRequest, HandshakeResponse, RequestParser, ResponseParser

__all__ = ["HttpMessage", "HttpSplitError", "HttpStreamSplitter", "parse_head"]

_MAX_HEAD = 64 * 1024


class HttpSplitError(ValueError):
    """The bytes are not HTTP/1.1 as far as this splitter can tell."""


@dataclass(frozen=True)
class HttpMessage:
    """One HTTP/1.1 request or response exactly as it crossed the wire.

    ``raw`` is every byte of the message (head, and body with its chunk
    framing), so ``len(raw)`` is what the message cost on the connection.
    """

    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes
    is_request: bool

    @property
    def head(self) -> bytes:
        """The start line and header block, up to and including the blank line."""
        return self.raw[: self.raw.index(b"\r\n\r\n") + 4]

    @property
    def method(self) -> str | None:
        return self.start_line.split(" ", 1)[0] if self.is_request else None

    @property
    def target(self) -> str | None:
        if not self.is_request:
            return None
        parts = self.start_line.split(" ")
        return parts[1] if len(parts) > 1 else ""

    @property
    def status(self) -> int | None:
        if self.is_request:
            return None
        parts = self.start_line.split(" ", 2)
        try:
            return int(parts[1])
        except (IndexError, ValueError):
            return None

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name`` (case-insensitive)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_tokens(self, name: str) -> set[str]:
        """Comma-separated tokens of every ``name`` header, lower-cased."""
        wanted = name.lower()
        tokens: set[str] = set()
        for key, value in self.headers:
            if key.lower() == wanted:
                tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
        return tokens

    @property
    def asks_for_websocket(self) -> bool:
        """A request carrying ``Connection: upgrade`` and ``Upgrade: websocket``."""
        return (
            self.is_request
            and "upgrade" in self.header_tokens("connection")
            and "websocket" in self.header_tokens("upgrade")
        )

    def summary(self) -> str:
        """The start line, plus the body size when there is a body."""
        text = self.start_line
        if self.asks_for_websocket:
            text += "  (Upgrade: websocket)"
        if self.body:
            text += f"  (+{len(self.body)} B body)"
        return text

    @property
    def handshake(self) -> HandshakeRequest | HandshakeResponse | None:
        """The codec's reading of this head, if it is one half of a WebSocket handshake."""
        if not (self.asks_for_websocket or self.status == 101):
            return None
        parser = RequestParser() if self.is_request else ResponseParser()
        try:
            return parser.feed(self.head)
        except WireError:
            return None

    def explain(self) -> str:
        """The message as text: the codec's annotated table for a handshake,
        otherwise one line per header and the body as a Python literal."""
        handshake = self.handshake
        if handshake is not None:
            return handshake.explain()
        lines = [self.start_line]
        lines += [f"{k}: {v}" for k, v in self.headers]
        lines.append("")
        if self.body:
            shown = self.body[:200]
            lines.append(repr(shown) + (" ..." if len(self.body) > 200 else ""))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        handshake = self.handshake
        if handshake is not None:
            return handshake._repr_html_()
        return f"<pre>{html.escape(self.explain())}</pre>"


def parse_head(head: bytes) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Start line and headers of a head that ends with a blank line."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
        raise HttpSplitError(str(exc)) from exc
    lines = text.split("\r\n")
    start = lines[0]
    if not start or " " not in start:
        raise HttpSplitError(f"not an HTTP start line: {start[:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            break
        if ":" not in line:
            raise HttpSplitError(f"header line without a colon: {line[:60]!r}")
        name, value = line.split(":", 1)
        headers.append((name.strip(), value.strip()))
    return start, tuple(headers)


@dataclass
class _Pending:
    """A message whose head has arrived and whose body has not all arrived."""

    start_line: str
    headers: tuple[tuple[str, str], ...]
    head: bytes
    mode: str  # "length", "chunked" or "close"
    remaining: int = 0
    body: bytearray = field(default_factory=bytearray)
    raw_body: bytearray = field(default_factory=bytearray)
    # chunked: "size", "data", "data-crlf", "trailer"
    chunk_state: str = "size"


class HttpStreamSplitter:
    """Cut one direction of an HTTP/1.1 connection into messages.

    ``receive(data)`` buffers bytes; ``next_message()`` returns the next
    complete message or ``None``. The caller decides what happens after a
    message (a ``101`` ends HTTP): :meth:`take_buffer` then hands over the bytes
    that followed it. Responses need to know which request they answer (a
    response to ``HEAD`` has no body): call :meth:`expect_response_to` with each
    request's method, in order.
    """

    def __init__(self, *, requests: bool) -> None:
        self.requests = requests
        self._buffer = bytearray()
        self._pending: _Pending | None = None
        self._methods: list[str] = []
        self._eof = False

    def expect_response_to(self, method: str) -> None:
        self._methods.append(method.upper())

    def receive(self, data: bytes) -> None:
        self._buffer += data

    def receive_eof(self) -> None:
        self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a returned message."""
        pending = self._pending
        extra = len(pending.head) + len(pending.raw_body) if pending else 0
        return len(self._buffer) + extra

    def take_buffer(self) -> bytes:
        """Everything received and not yet returned as a message, and forget it."""
        pending, self._pending = self._pending, None
        data = bytes(pending.head + pending.raw_body) if pending else b""
        data += bytes(self._buffer)
        self._buffer.clear()
        return data

    def next_message(self) -> HttpMessage | None:
        if self._pending is None and not self._start_message():
            return None
        assert self._pending is not None
        if not self._read_body(self._pending):
            return None
        pending, self._pending = self._pending, None
        return HttpMessage(
            start_line=pending.start_line,
            headers=pending.headers,
            body=bytes(pending.body),
            raw=bytes(pending.head + pending.raw_body),
            is_request=self.requests,
        )

    def _start_message(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD:
                raise HttpSplitError("no end of HTTP head in the first 64 KiB")
            if self._buffer and not self._looks_like_http_start():
                raise HttpSplitError(f"not HTTP: {bytes(self._buffer[:16])!r}")
            return False
        head = bytes(self._buffer[: end + 4])
        del self._buffer[: end + 4]
        start, headers = parse_head(head)
        pending = _Pending(start, headers, head, mode="length")
        self._choose_body_mode(pending)
        self._pending = pending
        return True

    def _looks_like_http_start(self) -> bool:
        first = bytes(self._buffer[:8])
        if not self.requests:
            return b"HTTP/1."[: len(first)] == first[:7]
        word = first.split(b" ", 1)[0]
        return bool(word) and word.isalpha() and word.isupper()

    def _choose_body_mode(self, pending: _Pending) -> None:
        # RFC 9112 §6.3, in its order.
        probe = HttpMessage(pending.start_line, pending.headers, b"", b"", self.requests)
        if not self.requests:
            method = self._methods.pop(0) if self._methods else "GET"
            status = probe.status or 0
            if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
                if 100 <= status < 200 and status != 101:
                    # an interim response: the final one still answers this request
                    self._methods.insert(0, method)
                pending.mode, pending.remaining = "length", 0
                return
            if method == "CONNECT" and 200 <= status < 300:
                pending.mode, pending.remaining = "length", 0
                return
        if "chunked" in probe.header_tokens("transfer-encoding"):
            pending.mode = "chunked"
            return
        length = probe.header("content-length")
        if length is not None:
            try:
                pending.remaining = int(length)
            except ValueError as exc:
                raise HttpSplitError(f"bad Content-Length {length!r}") from exc
            pending.mode = "length"
            return
        pending.mode = "length" if self.requests else "close"
        pending.remaining = 0

    def _read_body(self, p: _Pending) -> bool:
        if p.mode == "length":
            take = min(p.remaining, len(self._buffer))
            if take:
                p.body += self._buffer[:take]
                p.raw_body += self._buffer[:take]
                del self._buffer[:take]
                p.remaining -= take
            return p.remaining == 0
        if p.mode == "close":
            p.body += self._buffer
            p.raw_body += self._buffer
            self._buffer.clear()
            return self._eof
        return self._read_chunked(p)

    def _read_chunked(self, p: _Pending) -> bool:
        buf = self._buffer
        while True:
            if p.chunk_state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return False
                line = bytes(buf[:end])
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise HttpSplitError(f"bad chunk size line {line[:40]!r}") from exc
                p.raw_body += buf[: end + 2]
                del buf[: end + 2]
                p.remaining = size
                p.chunk_state = "data" if size else "trailer"
            elif p.chunk_state == "data":
                take = min(p.remaining, len(buf))
                p.body += buf[:take]
                p.raw_body += buf[:take]
                del buf[:take]
                p.remaining -= take
                if p.remaining:
                    return False
                p.chunk_state = "data-crlf"
            elif p.chunk_state == "data-crlf":
                if len(buf) < 2:
                    return False
                p.raw_body += buf[:2]
                del buf[:2]
                p.chunk_state = "size"
            else:  # trailer section: header lines until an empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    return False
                p.raw_body += buf[: end + 2]
                del buf[: end + 2]
                if end == 0:
                    return True
