"""HTTP/2 as the tap sees it: the preface, frames, HPACK-decoded headers, and the
WebSocket frames inside a WebSocket stream's DATA (RFC 9113, RFC 8441). Sans-I/O.

Every HTTP/2 frame starts with the same 9 bytes (RFC 9113 §4.1)::

    +-----------------------------------------------+
    |                 Length (24)                   |
    +---------------+---------------+---------------+
    |   Type (8)    |   Flags (8)   |
    +-+-------------+---------------+-------------------------------+
    |R|                 Stream Identifier (31)                      |
    +=+=============================================================+
    |                   Frame Payload (0...)                      ...
    +---------------------------------------------------------------+

The client's side opens with the 24-byte preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``
(§3.4). HEADERS carry an HPACK block (RFC 7541), decoded here with the ``hpack``
library that h2 uses, one decoder per direction, since each direction has its own
dynamic table. A stream whose request was an extended CONNECT with
``:protocol websocket`` (RFC 8441) has its DATA bytes cut into WebSocket frames by
the tap's own :class:`~wsdemo.tap.frames.FrameReader`, per stream and direction: a
WebSocket frame may span DATA frames, and a DATA frame may hold several.

Feed :class:`Http2Decoder` one direction's bytes at a time, in order, in any
chunking; it returns the items those bytes completed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import hpack

from ..wire.explain import Field, render_text
from .decode import Direction
from .frames import FrameReader, FrameView

__all__ = ["FRAME_TYPES", "PREFACE", "SETTINGS", "H2Frame", "Http2Decoder", "Preface",
           "view_table"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4)."""

FRAME_TYPES = {
    0x0: "DATA", 0x1: "HEADERS", 0x2: "PRIORITY", 0x3: "RST_STREAM", 0x4: "SETTINGS",
    0x5: "PUSH_PROMISE", 0x6: "PING", 0x7: "GOAWAY", 0x8: "WINDOW_UPDATE",
    0x9: "CONTINUATION",
}
"""Frame types of RFC 9113 §6."""

SETTINGS = {
    0x1: "HEADER_TABLE_SIZE", 0x2: "ENABLE_PUSH", 0x3: "MAX_CONCURRENT_STREAMS",
    0x4: "INITIAL_WINDOW_SIZE", 0x5: "MAX_FRAME_SIZE", 0x6: "MAX_HEADER_LIST_SIZE",
    0x8: "ENABLE_CONNECT_PROTOCOL", 0x9: "NO_RFC7540_PRIORITIES",
}
"""SETTINGS identifiers: RFC 9113 §6.5.2, 0x8 from RFC 8441 §3, 0x9 from RFC 9218."""

ERROR_CODES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM", 0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM", 0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}
"""Error codes of RFC 9113 §7."""

_FLAGS = {  # frame type -> [(bit, name)] (RFC 9113 §6)
    0x0: [(0x1, "END_STREAM"), (0x8, "PADDED")],
    0x1: [(0x1, "END_STREAM"), (0x4, "END_HEADERS"), (0x8, "PADDED"), (0x20, "PRIORITY")],
    0x4: [(0x1, "ACK")],
    0x5: [(0x4, "END_HEADERS"), (0x8, "PADDED")],
    0x6: [(0x1, "ACK")],
    0x9: [(0x4, "END_HEADERS")],
}


@dataclass(frozen=True)
class Preface:
    """The client's 24 bytes that say "HTTP/2 from here on" (RFC 9113 §3.4)."""

    direction: Direction
    offset: int
    valid: bool = True

    kind = "preface"
    nbytes = len(PREFACE)

    def summary(self) -> str:
        text = PREFACE.decode("ascii").replace("\r\n", "\\r\\n")
        return f"preface  {text}" + ("" if self.valid else "  !! not the HTTP/2 preface")


@dataclass(frozen=True)
class H2Frame:
    """One HTTP/2 frame as it crossed the wire, with what the tap read in it.

    ``headers``: the decoded header list of a HEADERS frame (with its
    CONTINUATIONs); ``settings``: ``(id, value)`` pairs of a SETTINGS frame;
    ``websocket``: the WebSocket frames this DATA frame completed (RFC 8441).
    """

    direction: Direction
    offset: int  # where its first byte sits in its direction's byte stream
    length: int
    type: int
    flags: int
    stream_id: int
    payload: bytes = field(repr=False)
    headers: tuple[tuple[str, str], ...] | None = None
    settings: tuple[tuple[int, int], ...] | None = None
    websocket: tuple[FrameView, ...] = ()
    on_websocket_stream: bool = False

    kind = "frame"

    @property
    def nbytes(self) -> int:
        return 9 + self.length

    @property
    def type_name(self) -> str:
        return FRAME_TYPES.get(self.type, f"unknown {self.type:#x}")

    @property
    def flag_names(self) -> list[str]:
        return [name for bit, name in _FLAGS.get(self.type, []) if self.flags & bit]

    @property
    def end_stream(self) -> bool:
        return self.type in (0x0, 0x1) and bool(self.flags & 0x1)

    def header(self) -> dict[str, str]:
        """The decoded header fields as a dict (last value wins)."""
        return dict(self.headers or ())

    def fields(self) -> list[Field]:
        """The 9-byte frame header, field by field (RFC 9113 §4.1)."""
        head = struct.pack("!I", self.length)[1:] + bytes([self.type, self.flags])
        head += struct.pack("!I", self.stream_id)
        flags = ", ".join(self.flag_names) or "none"
        return [
            Field("0-2", head[0:3].hex(" "), "length", str(self.length),
                  "payload bytes after this 9-byte header"),
            Field("3", f"{self.type:08b}", "type", f"{self.type:#x}", self.type_name),
            Field("4", f"{self.flags:08b}", "flags", f"{self.flags:#04x}", flags),
            Field("5-8", head[5:9].hex(" "), "R + stream id", str(self.stream_id),
                  "the connection itself" if self.stream_id == 0 else
                  ("client-initiated stream" if self.stream_id % 2 else "server stream")),
        ]

    def explain(self) -> str:
        """The frame header as a table, then what the payload says."""
        lines = [render_text(f"{self.type_name} frame, {self.nbytes} bytes on the wire",
                             self.fields())]
        lines += ["  " + line for line in self.details()]
        return "\n".join(lines)

    def summary(self) -> str:
        flags = " ".join(self.flag_names) or "-"
        return f"{self.type_name:<13} stream {self.stream_id}  length {self.length:<3} {flags}"

    def details(self) -> list[str]:
        """What the payload means, one line per field, setting or WebSocket frame."""
        if self.settings is not None:
            return [f"{SETTINGS.get(k, 'unknown')} ({k:#x}) = {v}" for k, v in self.settings]
        if self.headers is not None:
            return [f"{k} = {v}" for k, v in self.headers]
        if self.type == 0x0:
            if self.websocket:
                return ["WebSocket " + ws.summary() for ws in self.websocket]
            if self.on_websocket_stream:
                return ["part of a WebSocket frame, continued in a later DATA frame"
                        if self.payload else "no bytes"]
            if self.payload:
                text = self.payload.decode("utf-8", "replace")
                return [f"body {text[:60]!r}"]
            return []
        if self.type == 0x8 and self.length == 4:
            (increment,) = struct.unpack("!I", self.payload)
            return [f"window increment {increment & 0x7FFFFFFF}"]
        if self.type == 0x3 and self.length == 4:
            (code,) = struct.unpack("!I", self.payload)
            return [f"error code {ERROR_CODES.get(code, hex(code))}"]
        if self.type == 0x7 and self.length >= 8:
            last, code = struct.unpack("!II", self.payload[:8])
            debug = self.payload[8:].decode("utf-8", "replace")
            return [f"last stream {last & 0x7FFFFFFF}, error code "
                    f"{ERROR_CODES.get(code, hex(code))}" + (f", {debug!r}" if debug else "")]
        if self.type == 0x6:
            return [f"opaque data {self.payload.hex(' ')}"]
        return []


Item = Preface | H2Frame


class _Direction:
    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.buffer = bytearray()
        self.offset = 0
        self.needs_preface = direction is Direction.C2S
        self.hpack = hpack.Decoder()
        self.block: bytearray | None = None  # a header block waiting for CONTINUATION
        self.block_frames: list[H2Frame] = []


class Http2Decoder:
    """Read both directions of one HTTP/2 connection, incrementally.

    A malformed byte stream is not an error here: :attr:`problem` says what
    went wrong, and the rest of that direction is left unread.
    """

    def __init__(self) -> None:
        self._dirs = {d: _Direction(d) for d in Direction}
        self.items: list[Item] = []
        self.websocket_streams: set[int] = set()
        self._ws_readers: dict[tuple[Direction, int], FrameReader] = {}
        self.problem: str | None = None

    def receive(self, direction: Direction, data: bytes) -> list[Item]:
        """Bytes that went ``direction``; the items they completed, in order."""
        state = self._dirs[direction]
        state.buffer += data
        out: list[Item] = []
        if self.problem is not None:
            return out
        if state.needs_preface:
            if len(state.buffer) < len(PREFACE):
                return out
            valid = bytes(state.buffer[:len(PREFACE)]) == PREFACE
            out.append(Preface(direction, state.offset, valid))
            del state.buffer[:len(PREFACE)]
            state.offset += len(PREFACE)
            state.needs_preface = False
            if not valid:
                self.problem = "the client did not start with the HTTP/2 preface"
                self.items += out
                return out
        while len(state.buffer) >= 9:
            length = int.from_bytes(state.buffer[0:3], "big")
            if len(state.buffer) < 9 + length:
                break
            type_, flags = state.buffer[3], state.buffer[4]
            (stream_id,) = struct.unpack("!I", state.buffer[5:9])
            payload = bytes(state.buffer[9:9 + length])
            del state.buffer[:9 + length]
            frame = H2Frame(direction, state.offset, length, type_, flags,
                            stream_id & 0x7FFFFFFF, payload)
            state.offset += 9 + length
            try:
                out.extend(self._read(state, frame))
            except (hpack.HPACKError, ValueError, struct.error) as exc:
                self.problem = f"{frame.type_name} on stream {frame.stream_id}: {exc}"
                out.append(frame)
                break
        self.items += out
        return out

    def _read(self, state: _Direction, frame: H2Frame) -> list[H2Frame]:
        if frame.type == 0x4 and not frame.flags & 0x1:
            pairs = tuple(struct.unpack("!HI", frame.payload[i:i + 6])
                          for i in range(0, len(frame.payload) - 5, 6))
            return [_with(frame, settings=pairs)]
        if frame.type in (0x1, 0x9):
            return self._header_block(state, frame)
        if frame.type == 0x0:
            return [self._data(state, frame)]
        return [frame]

    def _header_block(self, state: _Direction, frame: H2Frame) -> list[H2Frame]:
        if frame.type == 0x1:
            body = frame.payload
            if frame.flags & 0x8:  # PADDED: a pad length byte, padding at the end
                body = body[1:len(body) - body[0]]
            if frame.flags & 0x20:  # PRIORITY: 5 bytes of dependency and weight
                body = body[5:]
            state.block = bytearray(body)
            state.block_frames = [frame]
        else:
            if state.block is None:
                raise ValueError("CONTINUATION without a header block to continue")
            state.block += frame.payload
            state.block_frames.append(frame)
        if not frame.flags & 0x4:  # no END_HEADERS yet
            return []
        headers = tuple((str(k), str(v)) for k, v in state.hpack.decode(bytes(state.block)))
        first, *rest = state.block_frames
        state.block, state.block_frames = None, []
        if state.direction is Direction.C2S:
            fields = dict(headers)
            if fields.get(":method") == "CONNECT" and fields.get(":protocol") == "websocket":
                self.websocket_streams.add(first.stream_id)
        return [_with(first, headers=headers), *rest]

    def _data(self, state: _Direction, frame: H2Frame) -> H2Frame:
        if frame.stream_id not in self.websocket_streams:
            return frame
        body = frame.payload
        if frame.flags & 0x8:
            body = body[1:len(body) - body[0]]
        key = (state.direction, frame.stream_id)
        reader = self._ws_readers.get(key)
        if reader is None:
            reader = self._ws_readers[key] = FrameReader(
                from_client=state.direction is Direction.C2S)
        return _with(frame, websocket=tuple(reader.receive(body)), on_websocket_stream=True)

    def table(self, items: list[Item] | None = None, *, by_direction: bool = False) -> str:
        return view_table(self.items if items is None else items, by_direction=by_direction)


def _with(frame: H2Frame, **changes: object) -> H2Frame:
    values = {f: getattr(frame, f) for f in frame.__dataclass_fields__}
    values.update(changes)
    return H2Frame(**values)  # type: ignore[arg-type]


def view_table(items: list[Item], *, by_direction: bool = False) -> str:
    """One line per item, its details indented below; ``by_direction``: client's first.

    Within one direction the order is the order on the wire. Between the two
    directions the order of a live capture depends on timing, so a lesson that
    must print the same text every run groups them (``by_direction=True``).
    """
    if by_direction:
        items = ([i for i in items if i.direction is Direction.C2S]
                 + [i for i in items if i.direction is Direction.S2C])
    lines = []
    for item in items:
        lines.append(f"{item.direction.arrow} {item.summary()}")
        if isinstance(item, H2Frame):
            lines += [f"      {line}" for line in item.details()]
    return "\n".join(lines)
