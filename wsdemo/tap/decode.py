"""Read both directions of one TCP connection as HTTP, then (after a 101) as frames.

Sans-I/O: feed it the bytes the tap saw, in the order it saw them, and it
returns what those bytes *mean*. The same bytes could be read either way —
what decides is the ``101 Switching Protocols``: before it, each direction is
a stream of HTTP/1.1 messages (several on a keep-alive connection); after it,
the very next byte is the first byte of a WebSocket frame (RFC 6455 §4.1,
§4.2.2). Nothing at the TCP level marks the switch.

One subtlety: a client that asks to upgrade may not know yet whether it will
get ``101`` or an ordinary answer, so the bytes it sends after the request are
held until the response decides how to read them.

Every byte fed in comes back in exactly one :class:`Decoded` item (an
unparsable or unfinished tail becomes a ``"bytes"`` item at end of stream), so
the byte counts of the items add up to the bytes on the wire.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .frames import Deflate, FrameReader, FrameView
from .http import HttpMessage, HttpSplitError, HttpStreamSplitter

__all__ = ["ConnectionDecoder", "Decoded", "Direction"]


class Direction(enum.Enum):
    """Which way bytes went through the tap."""

    C2S = "client→server"
    S2C = "server→client"

    @property
    def arrow(self) -> str:
        return "→" if self is Direction.C2S else "←"

    @property
    def other(self) -> Direction:
        return Direction.S2C if self is Direction.C2S else Direction.C2S


@dataclass(frozen=True)
class Decoded:
    """One unit of meaning: an HTTP message, a frame, raw bytes, or end of stream.

    ``kind`` is ``"http"`` (``item`` is an :class:`~wsdemo.tap.http.HttpMessage`),
    ``"frame"`` (``item`` is a :class:`~wsdemo.tap.frames.FrameView`),
    ``"bytes"`` (``item`` is the bytes nobody could parse) or ``"eof"`` (the
    sender closed its side; ``item`` is ``None``).
    """

    direction: Direction
    kind: str
    nbytes: int
    summary: str
    item: Any = None


class _Mode(enum.Enum):
    HTTP = "http"
    HELD = "held"  # waiting for the answer to an Upgrade request
    FRAMES = "frames"
    RAW = "raw"


class ConnectionDecoder:
    """Decode one proxied connection, both directions, incrementally."""

    def __init__(self) -> None:
        self._requests = HttpStreamSplitter(requests=True)
        self._responses = HttpStreamSplitter(requests=False)
        self._mode = {Direction.C2S: _Mode.HTTP, Direction.S2C: _Mode.HTTP}
        self._frames: dict[Direction, FrameReader] = {}
        self._held = bytearray()
        self._held_method = ""
        self._eof: set[Direction] = set()
        #: the ``101`` response, once the connection has switched
        self.switched_by: HttpMessage | None = None

    @property
    def upgraded(self) -> bool:
        return self.switched_by is not None

    def receive(self, direction: Direction, data: bytes) -> list[Decoded]:
        """Bytes that went ``direction``; returns the items they completed."""
        if not data:
            return []
        out: list[Decoded] = []
        self._feed(direction, data, out)
        return out

    def receive_eof(self, direction: Direction) -> list[Decoded]:
        """``direction``'s sender closed (or lost) its side of the connection."""
        if direction in self._eof:
            return []
        self._eof.add(direction)
        out: list[Decoded] = []
        mode = self._mode[direction]
        if mode is _Mode.HTTP:
            splitter = self._splitter(direction)
            splitter.receive_eof()
            self._drain_http(direction, out)
            rest = self._splitter(direction).take_buffer()
            if rest:
                out.append(_leftover(direction, rest, "incomplete HTTP message"))
        elif mode is _Mode.HELD:
            if self._held:
                held = bytes(self._held)
                out.append(_leftover(direction, held, "sent after Upgrade, unanswered"))
                self._held.clear()
        elif mode is _Mode.FRAMES:
            rest = self._frames[direction].take_buffer()
            if rest:
                out.append(_leftover(direction, rest, "incomplete frame"))
        out.append(Decoded(direction, "eof", 0, "end of stream (FIN)"))
        return out

    def _splitter(self, direction: Direction) -> HttpStreamSplitter:
        return self._requests if direction is Direction.C2S else self._responses

    def _feed(self, direction: Direction, data: bytes, out: list[Decoded]) -> None:
        mode = self._mode[direction]
        if mode is _Mode.HTTP:
            self._splitter(direction).receive(data)
            self._drain_http(direction, out)
        elif mode is _Mode.HELD:
            self._held += data
        elif mode is _Mode.FRAMES:
            self._drain_frames(direction, data, out)
        else:
            out.append(Decoded(direction, "bytes", len(data), _bytes_summary(data), data))

    def _drain_http(self, direction: Direction, out: list[Decoded]) -> None:
        splitter = self._splitter(direction)
        while self._mode[direction] is _Mode.HTTP:
            try:
                message = splitter.next_message()
            except HttpSplitError as exc:
                self._give_up(direction, splitter.take_buffer(), str(exc), out)
                return
            if message is None:
                return
            out.append(Decoded(direction, "http", len(message.raw), message.summary(), message))
            if direction is Direction.C2S:
                self._after_request(message)
            else:
                self._after_response(message, out)

    def _after_request(self, request: HttpMessage) -> None:
        self._responses.expect_response_to(request.method or "GET")
        if request.header("upgrade") is not None or request.method == "CONNECT":
            self._mode[Direction.C2S] = _Mode.HELD
            self._held_method = request.method or ""
            self._held += self._requests.take_buffer()

    def _after_response(self, response: HttpMessage, out: list[Decoded]) -> None:
        status = response.status or 0
        if self._mode[Direction.C2S] is not _Mode.HELD or (100 <= status < 200 and status != 101):
            return
        held, self._held = bytes(self._held), bytearray()
        if status == 101 and "websocket" in response.header_tokens("upgrade"):
            self.switched_by = response
            self._mode[Direction.C2S] = _Mode.FRAMES
            self._mode[Direction.S2C] = _Mode.FRAMES
            deflate = Deflate.from_header(response.header("sec-websocket-extensions"))
            self._frames[Direction.C2S] = FrameReader(from_client=True, deflate=deflate)
            self._frames[Direction.S2C] = FrameReader(from_client=False, deflate=deflate)
            trailing = self._responses.take_buffer()
            if trailing:
                self._drain_frames(Direction.S2C, trailing, out)
            if held:
                self._drain_frames(Direction.C2S, held, out)
        elif status == 101 or (self._held_method == "CONNECT" and 200 <= status < 300):
            # some other protocol (h2c, a CONNECT tunnel): show it, don't guess
            self._mode[Direction.C2S] = _Mode.RAW
            self._mode[Direction.S2C] = _Mode.RAW
            rest = self._responses.take_buffer()
            if rest:
                out.append(Decoded(Direction.S2C, "bytes", len(rest), _bytes_summary(rest), rest))
            if held:
                out.append(Decoded(Direction.C2S, "bytes", len(held), _bytes_summary(held), held))
        else:
            # refused: the client's next bytes are just its next request
            self._mode[Direction.C2S] = _Mode.HTTP
            self._requests.receive(held)
            self._drain_http(Direction.C2S, out)

    def _drain_frames(self, direction: Direction, data: bytes, out: list[Decoded]) -> None:
        reader = self._frames[direction]
        out.extend(_frame_items(direction, reader.receive(data)))
        if reader.error is not None:
            self._give_up(direction, reader.take_buffer(), reader.error.reason, out)

    def _give_up(self, direction: Direction, rest: bytes, reason: str, out: list[Decoded]) -> None:
        self._mode[direction] = _Mode.RAW
        if rest:
            out.append(_leftover(direction, rest, f"not decodable ({reason})"))


def _frame_items(direction: Direction, frames: list[FrameView]) -> list[Decoded]:
    return [Decoded(direction, "frame", f.nbytes, f.summary(), f) for f in frames]


def _leftover(direction: Direction, data: bytes, why: str) -> Decoded:
    return Decoded(direction, "bytes", len(data), f"{why}: {_bytes_summary(data)}", data)


def _bytes_summary(data: bytes) -> str:
    shown = data[:24].hex(" ")
    return f"{len(data)} B {shown}{' ...' if len(data) > 24 else ''}"
