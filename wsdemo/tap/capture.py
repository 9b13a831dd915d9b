"""A tap's record: the chunks it copied and the messages they decode to (sans-I/O).

:class:`Capture` keeps what :class:`wsdemo.tap.proxy.Tap` saw, per connection and
direction, and decodes it as it arrives (:mod:`wsdemo.tap.decode`: HTTP messages
until a ``101``, WebSocket frames after it). It opens no socket: a test or a
lesson can feed it bytes by hand. It imports only the tap's decoders and views.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .decode import ConnectionDecoder, Decoded, Direction
from .frames import FrameView
from .http import HttpMessage
from .view import capture_html, capture_table, plot_sequence

__all__ = ["Capture", "Chunk", "ConnectionInfo", "Direction", "Message"]


@dataclass(frozen=True)
class Chunk:
    """One ``read()`` the tap did: these bytes, this way, at this time.

    Chunk boundaries are whatever TCP and the operating system delivered; they
    are *not* message boundaries. ``data == b""`` with ``eof=True`` records
    that the sender closed its side.
    """

    index: int
    conn: int
    direction: Direction
    t: float
    data: bytes
    eof: bool = False


@dataclass(frozen=True)
class Message:
    """A decoded unit (HTTP message, frame, raw bytes, end of stream) on a connection.

    ``t`` is when the tap had the last of its bytes (``time.monotonic()``);
    ``offset`` is where its first byte sits in its direction's byte stream
    (:meth:`Capture.stream`), so ``stream[offset:offset + nbytes]`` is the
    message exactly as it crossed the wire.
    """

    index: int
    conn: int
    direction: Direction
    t: float
    kind: str
    nbytes: int
    summary: str
    item: Any
    offset: int = 0

    @property
    def is_http(self) -> bool:
        return self.kind == "http"

    @property
    def is_frame(self) -> bool:
        return self.kind == "frame"

    @property
    def http(self) -> HttpMessage:
        assert isinstance(self.item, HttpMessage), self.kind
        return self.item

    @property
    def frame(self) -> FrameView:
        assert isinstance(self.item, FrameView), self.kind
        return self.item


@dataclass
class ConnectionInfo:
    """The two TCP connections the tap joins for one proxied connection."""

    conn: int
    client: tuple[Any, ...] | None  # the client's address as the tap sees it
    upstream: tuple[Any, ...] | None  # the tap's own address towards the server
    decoder: ConnectionDecoder = field(default_factory=ConnectionDecoder, repr=False)
    closed: set[Direction] = field(default_factory=set)
    #: bytes of each direction already turned into messages
    decoded: dict[Direction, int] = field(default_factory=dict)


class Capture:
    """Everything a tap recorded: raw chunks and the messages decoded from them.

    Display it as text (:meth:`table`), as HTML (a notebook shows it by
    itself), or as a sequence diagram (:meth:`plot`). :meth:`only` selects one
    connection; :meth:`stream` gives one direction's bytes as one ``bytes``.
    """

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.messages: list[Message] = []
        self.connections: dict[int, ConnectionInfo] = {}
        self._t0: float | None = None

    # -- recording (called by the Tap, or by hand to decode a saved byte stream) --

    def open_connection(
        self, client: tuple[Any, ...] | None = None, upstream: tuple[Any, ...] | None = None
    ) -> int:
        conn = max(self.connections, default=0) + 1
        self.connections[conn] = ConnectionInfo(conn, client, upstream)
        return conn

    def record(
        self, conn: int, direction: Direction, data: bytes, t: float | None = None
    ) -> list[Message]:
        """Append one chunk and return the messages it completed."""
        info = self.connections[conn]
        chunk = self._add_chunk(conn, direction, data, t, eof=False)
        return self._add_decoded(info, chunk, info.decoder.receive(direction, data))

    def record_eof(self, conn: int, direction: Direction, t: float | None = None) -> list[Message]:
        """Record that ``direction``'s sender closed its side (idempotent)."""
        info = self.connections[conn]
        if direction in info.closed:
            return []
        info.closed.add(direction)
        chunk = self._add_chunk(conn, direction, b"", t, eof=True)
        return self._add_decoded(info, chunk, info.decoder.receive_eof(direction))

    def _add_chunk(
        self, conn: int, direction: Direction, data: bytes, t: float | None, eof: bool
    ) -> Chunk:
        t = time.monotonic() if t is None else t
        if self._t0 is None:
            self._t0 = t
        chunk = Chunk(len(self.chunks), conn, direction, t, data, eof)
        self.chunks.append(chunk)
        return chunk

    def _add_decoded(
        self, info: ConnectionInfo, chunk: Chunk, items: list[Decoded]
    ) -> list[Message]:
        added = []
        for item in items:
            offset = info.decoded.get(item.direction, 0)
            info.decoded[item.direction] = offset + item.nbytes
            message = Message(
                index=len(self.messages),
                conn=info.conn,
                direction=item.direction,
                t=chunk.t,
                kind=item.kind,
                nbytes=item.nbytes,
                summary=item.summary,
                item=item.item,
                offset=offset,
            )
            self.messages.append(message)
            added.append(message)
        return added

    # -- reading --

    @property
    def t0(self) -> float:
        """Monotonic time of the first chunk (0.0 for an empty capture)."""
        return self._t0 or 0.0

    @property
    def upgraded(self) -> bool:
        """True once some connection in this capture switched to WebSocket."""
        return any(info.decoder.upgraded for info in self.connections.values())

    def only(self, conn: int) -> Capture:
        """A capture of one connection (a view: it shares the recorded objects)."""
        view = Capture()
        view.connections = {conn: self.connections[conn]}
        view.chunks = [c for c in self.chunks if c.conn == conn]
        view.messages = [m for m in self.messages if m.conn == conn]
        view._t0 = self._t0
        return view

    def select(
        self,
        *,
        kind: str | None = None,
        direction: Direction | None = None,
        conn: int | None = None,
    ) -> list[Message]:
        return [
            m
            for m in self.messages
            if (kind is None or m.kind == kind)
            and (direction is None or m.direction is direction)
            and (conn is None or m.conn == conn)
        ]

    @property
    def frames(self) -> list[Message]:
        return self.select(kind="frame")

    @property
    def http(self) -> list[Message]:
        return self.select(kind="http")

    def stream(self, direction: Direction, conn: int | None = None) -> bytes:
        """All the bytes that went ``direction`` (on ``conn``), in order."""
        return b"".join(
            c.data
            for c in self.chunks
            if c.direction is direction and (conn is None or c.conn == conn)
        )

    def nbytes(self, direction: Direction | None = None, conn: int | None = None) -> int:
        """Bytes on the wire (this direction, this connection), counted from the chunks."""
        return sum(
            len(c.data)
            for c in self.chunks
            if (direction is None or c.direction is direction)
            and (conn is None or c.conn == conn)
        )

    def clear(self) -> None:
        """Forget what was recorded; connections still open keep being decoded."""
        self.chunks.clear()
        self.messages.clear()
        self._t0 = None
        for conn in [c for c, info in self.connections.items() if len(info.closed) == 2]:
            del self.connections[conn]

    def __len__(self) -> int:
        return len(self.messages)

    # -- display --

    def table(self, *, times: bool = False, width: int = 72) -> str:
        """One line per message. ``times=True`` adds milliseconds since the first chunk."""
        return capture_table(self, times=times, width=width)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return (
            f"<Capture: {len(self.connections)} connection(s), {len(self.chunks)} chunks, "
            f"{len(self.messages)} messages>"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # The notebook's text/plain: the table (stable), never raw times.
        printer.text(self.table())

    def to_html(self, *, times: bool = False) -> str:
        """The table as HTML, each row opening onto its field-by-field explanation.

        Without ``times`` it holds nothing that changes from run to run except
        what the bytes themselves carry (a ``Date`` header, a random mask).
        """
        return capture_html(self, times=times)

    def _repr_html_(self) -> str:
        return self.to_html()

    def plot(self, ax: Any = None, *, y: str = "order", max_label: int = 46) -> Any:
        """Draw a sequence diagram on ``ax`` (a new figure if None); returns the Axes.

        ``y="order"`` spaces the arrows evenly, ``y="time"`` places them at their
        time (ms since the first chunk): gaps in the conversation become visible.
        """
        return plot_sequence(self, ax=ax, y=y, max_label=max_label)
