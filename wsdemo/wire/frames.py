"""WebSocket frames: the base framing protocol of RFC 6455 §5.

::

      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +-+-+-+-+-------+-+-------------+-------------------------------+
     |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
     |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
     |N|V|V|V|       |S|             |   (if payload len==126/127)   |
     | |1|2|3|       |K|             |                               |
     +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
     |     Extended payload length continued, if payload len == 127  |
     + - - - - - - - - - - - - - - - +-------------------------------+
     |                               |Masking-key, if MASK set to 1  |
     +-------------------------------+-------------------------------+
     | Masking-key (continued)       |          Payload Data         |
     +-------------------------------- - - - - - - - - - - - - - - - +

Two layers, kept apart on purpose:

- :func:`read_frame` only *cuts* the byte stream into frames (structure).
- :func:`check_frame` applies the per-frame rules of §5 (reserved bits,
  opcodes, masking direction, control frames, close payloads), raising
  :class:`RemoteProtocolError` with the close code to send.

A connection applies both (and the message rules, see ``connection.py``); a
wire tap can cut frames and only *report* what breaks the rules.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from enum import IntEnum

from .buffer import Buffer, Pump
from .errors import LocalProtocolError, RemoteProtocolError
from .explain import Field, hex_bytes, render_html, render_text

__all__ = [
    "CloseCode",
    "Frame",
    "FrameParser",
    "Opcode",
    "Utf8Validator",
    "apply_mask",
    "check_frame",
    "check_header",
    "is_valid_close_code",
    "parse_close",
    "read_frame",
    "serialize_close",
]


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8); 0x3-0x7 and 0xB-0xF are reserved."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """Control frames have the high bit of the opcode set (§5.5)."""
        return self >= 0x8


class CloseCode(IntEnum):
    """Status codes of a Close frame (RFC 6455 §7.4.1, IANA registry §11.7)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # reported locally, never sent (§7.4.1)
    ABNORMAL_CLOSURE = 1006  # reported locally, never sent
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # reported locally, never sent


_CLOSE_MEANING = {
    1000: "normal closure", 1001: "going away", 1002: "protocol error",
    1003: "unsupported data", 1005: "no status received", 1006: "abnormal closure",
    1007: "invalid payload data", 1008: "policy violation", 1009: "message too big",
    1010: "mandatory extension", 1011: "internal error", 1012: "service restart",
    1013: "try again later", 1014: "bad gateway", 1015: "TLS handshake failure",
}


def is_valid_close_code(code: int) -> bool:
    """May ``code`` appear in a Close frame on the wire? (§7.4.1, §7.4.2)

    1000-1003 and 1007-1014 are defined; 1004 is reserved, 1005/1006/1015 are
    only for reporting; 3000-3999 are registered by libraries and frameworks,
    4000-4999 are private to applications.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking key repeated (§5.3); masking and
    unmasking are the same operation."""
    if len(mask) != 4:
        raise LocalProtocolError(f"a masking key is 4 bytes, not {len(mask)}")
    n = len(data)
    if n == 0:
        return b""
    # One big-integer XOR instead of a Python loop: fast enough for 64 KiB frames.
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def parse_close(payload: bytes) -> tuple[int, str]:
    """Decode a Close frame's body into ``(code, reason)`` (§5.5.1).

    An empty body means "no status code": reported as 1005 (§7.1.5). Raises
    :class:`RemoteProtocolError`: 1002 for a 1-byte body or a code that may
    not be sent, 1007 for a reason that is not UTF-8.
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise RemoteProtocolError("a Close body of 1 byte cannot hold a status code (§5.5.1)")
    (code,) = struct.unpack("!H", payload[:2])
    if not is_valid_close_code(code):
        raise RemoteProtocolError(f"close code {code} may not be sent (§7.4.1)")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("close reason is not valid UTF-8 (§5.5.1)", 1007) from None
    return code, reason


def serialize_close(code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
    """Build a Close frame's body (§5.5.1): 2-byte code, then a UTF-8 reason.

    ``code=None`` gives an empty body (no status). Raises
    :class:`LocalProtocolError` for a code that may not be sent or a body over
    125 bytes (§5.5).
    """
    if code is None:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent (§7.4.1)")
    payload = struct.pack("!H", code) + reason.encode("utf-8")
    if len(payload) > 125:
        raise LocalProtocolError("close reason longer than 123 bytes (§5.5)")
    return payload


@dataclass(frozen=True)
class Frame:
    """One WebSocket frame (§5.2). ``payload`` is always the *unmasked* data.

    ``mask`` is the masking key the frame carries on the wire (None: not
    masked). Building a frame never validates it, so a lesson or a test can
    craft a broken one; :func:`check_frame` says what is wrong with it.
    """

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    mask: bytes | None = None
    # The header exactly as received, so a non-minimal length stays visible.
    header: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def parse(cls, data: bytes) -> Frame:
        """Decode exactly one frame from ``data`` (structure only, no rule checks)."""
        buffer = Buffer()
        buffer.feed(data)
        buffer.feed_eof()
        pump = Pump(read_frame(buffer))
        assert pump.done and pump.result is not None  # at EOF the parser returns or raises
        if len(buffer):
            raise RemoteProtocolError(f"{len(buffer)} bytes left after the frame")
        return pump.result

    def build_header(self) -> bytes:
        """The header this frame gets when serialized: minimal length encoding (§5.2)."""
        first = (self.fin << 7) | (self.rsv1 << 6) | (self.rsv2 << 5) | (self.rsv3 << 4)
        first |= self.opcode & 0x0F
        mask_bit = 0x80 if self.mask is not None else 0
        n = len(self.payload)
        if n < 126:
            header = struct.pack("!BB", first, mask_bit | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", first, mask_bit | 126, n)
        elif n < 1 << 63:
            header = struct.pack("!BBQ", first, mask_bit | 127, n)
        else:
            raise LocalProtocolError("payload longer than 2**63 - 1 bytes (§5.2)")
        return header + (self.mask or b"")

    def serialize(self) -> bytes:
        """The bytes of this frame on the wire (payload masked if ``mask`` is set)."""
        payload = self.payload if self.mask is None else apply_mask(self.payload, self.mask)
        return self.build_header() + payload

    @property
    def kind(self) -> str:
        """The opcode's name (``"TEXT"``), or ``"reserved 0x3"`` for an unknown one."""
        try:
            return Opcode(self.opcode).name
        except ValueError:
            return f"reserved {self.opcode:#x}"

    def fields(self, compressed: bool = False) -> list[Field]:
        """Every field of the frame as it sits on the wire, one row each.

        ``compressed``: the handshake negotiated ``permessage-deflate`` and this
        frame belongs to a compressed message, so RSV1 and the payload are read
        as RFC 7692 says (the codec itself never negotiates it: it refuses RSV1).
        """
        header = self.header or self.build_header()
        opcode = self.opcode & 0x0F
        length7 = header[1] & 0x7F
        rows = [
            Field("0", f"{self.fin:d}.......", "FIN", f"{self.fin:d}",
                  "final fragment" if self.fin else "more fragments follow"),
            Field("0", f".{self.rsv1:d}{self.rsv2:d}{self.rsv3:d}....", "RSV1-3",
                  f"{self.rsv1:d} {self.rsv2:d} {self.rsv3:d}", self._rsv_meaning(compressed)),
            Field("0", f"....{opcode:04b}", "opcode", f"{opcode:#x}", _opcode_meaning(opcode)),
            Field("1", f"{self.mask is not None:d}.......", "MASK", f"{self.mask is not None:d}",
                  "payload is masked" if self.mask is not None else "payload not masked"),
        ]
        if length7 < 126:
            rows.append(Field("1", f".{length7:07b}", "payload length", str(length7),
                              "7-bit length"))
            pos = 2
        else:
            size = 2 if length7 == 126 else 8
            rows.append(Field("1", f".{length7:07b}", "payload length", str(length7),
                              f"a {size * 8}-bit length follows"))
            (length,) = struct.unpack("!H" if size == 2 else "!Q", header[2:2 + size])
            rows.append(Field(_span(2, size), "", f"extended length ({size * 8}-bit)",
                              str(length), _length_note(length, size)))
            pos = 2 + size
        if self.mask is not None:
            rows.append(Field(_span(pos, 4), "", "masking key", self.mask.hex(" ")))
            pos += 4
        n = len(self.payload)
        where = _span(pos, n) if n else "-"
        if self.mask is not None:
            rows.append(Field(where, "", "masked payload",
                              hex_bytes(apply_mask(self.payload, self.mask)),
                              "as on the wire"))
        meaning = ("DEFLATE data, RFC 7692 §7.2 (inflate to read it)" if compressed
                   else self._payload_meaning())
        rows.append(Field(where, "", "payload" if self.mask is None else "unmasked payload",
                          hex_bytes(self.payload), meaning))
        return rows

    def explain(self, compressed: bool = False) -> str:
        """The frame as a text table: field, bits, value, meaning (see :meth:`fields`)."""
        masked = ", masked" if self.mask is not None else ""
        title = f"{self.kind} frame, {len(self.payload)}-byte payload{masked}"
        return render_text(title, self.fields(compressed))

    def _rsv_meaning(self, compressed: bool) -> str:
        if compressed and not (self.rsv2 or self.rsv3):
            if self.rsv1:
                return "RSV1: compressed (permessage-deflate, RFC 7692 §6)"
            return "0 on a continuation of a compressed message (RFC 7692 §6.1)"
        if not (self.rsv1 or self.rsv2 or self.rsv3):
            return "no extension: must be 0"
        return "set without an extension: protocol error"

    def _repr_html_(self) -> str:
        masked = ", masked" if self.mask is not None else ""
        title = f"{self.kind} frame, {len(self.payload)}-byte payload{masked}"
        return render_html(title, self.fields())

    def _payload_meaning(self) -> str:
        if self.opcode == Opcode.CLOSE:
            try:
                code, reason = parse_close(self.payload)
            except RemoteProtocolError as exc:
                return f"invalid close body: {exc.reason}"
            meaning = _CLOSE_MEANING.get(code, "application" if code >= 4000 else "library")
            return f"close code {code} ({meaning}), reason {reason!r}"
        if self.opcode in (Opcode.TEXT, Opcode.CONT):
            try:
                text = self.payload.decode("utf-8")
            except UnicodeDecodeError:
                return "not UTF-8 on its own (a fragment may split a character)"
            shown = text if len(text) <= 40 else text[:40] + "…"
            return f"UTF-8 text {shown!r}"
        return ""


def _span(start: int, size: int) -> str:
    return str(start) if size == 1 else f"{start}-{start + size - 1}"


def _opcode_meaning(opcode: int) -> str:
    names = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close (control)",
             0x9: "ping (control)", 0xA: "pong (control)"}
    return names.get(opcode, "reserved: protocol error")


def _length_note(length: int, size: int) -> str:
    minimum = 126 if size == 2 else 1 << 16
    if length < minimum:
        return "not minimal: protocol error (§5.2)"
    return f"{length} bytes"


HeaderHook = Callable[[Frame, int], None]
"""Called with a frame whose header is in (``payload`` still empty) and its payload length."""
PayloadHook = Callable[[Frame, bytes], None]
"""Called with that frame and each piece of its (unmasked) payload as it arrives."""


def read_frame(
    buffer: Buffer,
    max_size: int | None = None,
    strict: bool = False,
    on_header: HeaderHook | None = None,
    on_payload: PayloadHook | None = None,
) -> Generator[None, None, Frame]:
    """Parse one frame from ``buffer``, waiting (``yield``) for bytes as needed (§5.2).

    This only cuts the stream: it checks nothing but what it must to go on —
    the 64-bit length's top bit (§5.2: "the most significant bit MUST be 0")
    and ``max_size`` for data frames (1009). Both are checked *before* the
    payload is buffered, and so is, if ``strict``, the 125-byte limit of
    control frames (1002, §5.5): a peer cannot make us wait for 2**62 bytes.

    ``on_header`` sees the header before the payload is read, ``on_payload``
    each piece of the payload as it arrives: a connection uses them to fail as
    soon as the bytes so far break a rule (invalid UTF-8 in the middle of a
    frame, §8.1), not only once the whole frame is in.
    """
    header = yield from buffer.read_exact(2)
    first, second = header
    length = second & 0x7F
    if length == 126:
        extended = yield from buffer.read_exact(2)
        (length,) = struct.unpack("!H", extended)
        header += extended
    elif length == 127:
        extended = yield from buffer.read_exact(8)
        (length,) = struct.unpack("!Q", extended)
        header += extended
        if length >> 63:
            raise RemoteProtocolError("64-bit payload length with its top bit set (§5.2)")
    if first & 0x08:  # a control opcode
        if strict and length > 125:
            raise RemoteProtocolError("control frame payload longer than 125 bytes (§5.5)")
    elif max_size is not None and length > max_size:
        raise RemoteProtocolError(f"frame of {length} bytes exceeds the limit of {max_size}", 1009)
    mask = None
    if second & 0x80:
        mask = yield from buffer.read_exact(4)
        header += mask
    opcode = first & 0x0F
    try:
        opcode = Opcode(opcode)
    except ValueError:
        pass  # kept as a plain int: check_frame reports it
    frame = Frame(
        opcode=opcode,
        fin=bool(first & 0x80),
        rsv1=bool(first & 0x40),
        rsv2=bool(first & 0x20),
        rsv3=bool(first & 0x10),
        mask=mask,
        header=header,
    )
    if on_header is not None:
        on_header(frame, length)
    if on_payload is None:
        payload = yield from buffer.read_exact(length)
        if mask is not None:
            payload = apply_mask(payload, mask)
    else:
        pieces = bytearray()
        while len(pieces) < length:
            piece = yield from buffer.read_some(length - len(pieces))
            if mask is not None:
                # the key continues where the previous piece stopped (§5.3: octet i
                # is XORed with key octet i mod 4)
                shift = len(pieces) % 4
                piece = apply_mask(piece, mask[shift:] + mask[:shift])
            pieces += piece
            on_payload(frame, piece)
        payload = bytes(pieces)
    return replace(frame, payload=payload)


def check_frame(frame: Frame, expect_masked: bool | None = None) -> None:
    """Apply the per-frame rules of RFC 6455 §5; raise :class:`RemoteProtocolError`.

    ``expect_masked``: True when the frame comes from a client (§5.1: a server
    MUST close on an unmasked frame), False when it comes from a server (a
    client MUST close on a masked one), None to skip the check (a tap).
    """
    check_header(frame, len(frame.payload), expect_masked)
    if frame.opcode == Opcode.CLOSE:
        parse_close(frame.payload)


def check_header(frame: Frame, length: int, expect_masked: bool | None = None) -> None:
    """The rules of :func:`check_frame` that the header alone decides (all but the
    Close body), for a frame whose payload of ``length`` bytes has not arrived yet."""
    if frame.rsv1 or frame.rsv2 or frame.rsv3:
        raise RemoteProtocolError("reserved bit set but no extension was negotiated (§5.2)")
    if frame.opcode not in Opcode._value2member_map_:
        raise RemoteProtocolError(f"reserved opcode {frame.opcode:#x} (§5.2)")
    if expect_masked is True and frame.mask is None:
        raise RemoteProtocolError("a client's frame must be masked (§5.1)")
    if expect_masked is False and frame.mask is not None:
        raise RemoteProtocolError("a server's frame must not be masked (§5.1)")
    if frame.header:
        length7 = frame.header[1] & 0x7F
        if (length7 == 126 and length < 126) or (length7 == 127 and length < 1 << 16):
            raise RemoteProtocolError("payload length not in its minimal encoding (§5.2)")
    if Opcode(frame.opcode).is_control:
        if length > 125:
            raise RemoteProtocolError("control frame payload longer than 125 bytes (§5.5)")
        if not frame.fin:
            raise RemoteProtocolError("control frames must not be fragmented (§5.5)")


class FrameParser:
    """Incremental frame parser: feed bytes in any chunking, get the same frames.

    ``strict`` applies :func:`check_frame` to every frame (with
    ``expect_masked``), so a bad frame raises :class:`RemoteProtocolError`
    after the good frames before it have been yielded — the header's rules as
    soon as the header is in, before its payload is waited for.
    ``on_header``/``on_payload``: see :func:`read_frame`.

    >>> parser = FrameParser()
    >>> parser.feed(bytes.fromhex("81 05 48 65"))
    >>> list(parser.frames())
    []
    >>> parser.feed(bytes.fromhex("6c 6c 6f"))
    >>> [frame.payload for frame in parser.frames()]
    [b'Hello']
    """

    def __init__(
        self,
        expect_masked: bool | None = None,
        max_size: int | None = None,
        strict: bool = True,
        on_header: HeaderHook | None = None,
        on_payload: PayloadHook | None = None,
    ) -> None:
        self.buffer = Buffer()
        self.expect_masked = expect_masked
        self.max_size = max_size
        self.strict = strict
        self._on_header = on_header
        self._on_payload = on_payload
        self._pump: Pump[Frame] | None = None
        self.error: RemoteProtocolError | None = None

    def feed(self, data: bytes) -> None:
        self.buffer.feed(data)

    def frames(self) -> Iterator[Frame]:
        """Yield every frame that the bytes fed so far complete.

        After a :class:`RemoteProtocolError` the stream cannot be resynchronised:
        every later call raises the same error again.
        """
        if self.error is not None:
            raise self.error
        try:
            while True:
                if self._pump is None:
                    if not self.buffer:
                        return
                    self._pump = Pump(read_frame(self.buffer, self.max_size, self.strict,
                                                 self._header_received, self._on_payload))
                else:
                    self._pump.resume()
                if not self._pump.done:
                    return
                frame = self._pump.result
                self._pump = None
                assert frame is not None
                if self.strict:
                    check_frame(frame, self.expect_masked)
                yield frame
        except RemoteProtocolError as exc:
            self.error = exc
            raise

    def parse(self, data: bytes) -> list[Frame]:
        """Feed ``data`` and return the frames it completes."""
        self.feed(data)
        return list(self.frames())

    def _header_received(self, frame: Frame, length: int) -> None:
        if self.strict:
            check_header(frame, length, self.expect_masked)
        if self._on_header is not None:
            self._on_header(frame, length)


class Utf8Validator:
    """Decode a text message as its bytes arrive, failing as soon as they cannot
    be the start of valid UTF-8 (§8.1: fail "as soon as" invalid data is seen).

    A fragment, or a partial read of one frame, may end inside a character;
    that is fine until the message ends (``final=True``). CPython's incremental
    decoder already rejects most impossible prefixes at once, but keeps
    ``ED A0``-``ED BF`` (the start of a UTF-16 surrogate, excluded by RFC 3629 §3)
    until the third byte: checked here so that prefix fails as fast.

    >>> v = Utf8Validator()
    >>> v.decode(b"\\xce")
    ''
    >>> v.decode(b"\\xba", final=True)
    'κ'
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def decode(self, data: bytes, final: bool = False) -> str:
        """The text ``data`` completes; :class:`RemoteProtocolError` 1007 if invalid."""
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise RemoteProtocolError("text message is not valid UTF-8 (§8.1)", 1007) from None
        pending = self._decoder.getstate()[0]
        if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise RemoteProtocolError("text message is not valid UTF-8: a UTF-16 surrogate "
                                      "(RFC 3629 §3)", 1007)
        return text
