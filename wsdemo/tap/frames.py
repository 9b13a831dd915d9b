"""Frames as the tap sees them: the codec's :class:`~wsdemo.wire.frames.Frame`,
plus what a bystander can say about it.

Sans-I/O. The codec's :class:`~wsdemo.wire.frames.FrameParser` cuts the byte
stream (``strict=False``: a tap reports broken rules instead of failing the
connection). This module adds the bystander's notes: who sent the frame,
how many bytes it took on the wire, which rule of RFC 6455 §5 it breaks (if
any), and — when the handshake negotiated ``permessage-deflate`` (RFC 7692) —
the inflated payload, so a compressed message is still readable.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..wire.errors import RemoteProtocolError
from ..wire.explain import render_html
from ..wire.frames import Frame, FrameParser, Opcode, check_frame, parse_close

__all__ = ["Deflate", "FrameReader", "FrameView"]

_PREVIEW = 40


@dataclass(frozen=True)
class FrameView:
    """One frame on a tapped connection.

    ``frame`` is the codec's frame (its ``payload`` is unmasked);
    ``nbytes`` counts header, mask and payload as they were on the wire;
    ``problem`` names the rule of RFC 6455 §5 the frame breaks, or is None;
    ``inflated`` is the decompressed payload of a compressed message's last
    frame (RFC 7692 §6.2), else None; ``compressed`` is True for every frame of
    a compressed message (RSV1 is set on its first frame only, §6.1).
    """

    frame: Frame
    from_client: bool
    problem: str | None = None
    inflated: bytes | None = None
    compressed: bool = False

    @property
    def nbytes(self) -> int:
        return len(self.frame.header or self.frame.build_header()) + len(self.frame.payload)

    @property
    def opcode(self) -> int:
        return self.frame.opcode

    @property
    def kind(self) -> str:
        return self.frame.kind

    @property
    def payload(self) -> bytes:
        """The application's bytes: unmasked, and inflated if it was compressed."""
        return self.inflated if self.inflated is not None else self.frame.payload

    @property
    def fin(self) -> bool:
        return self.frame.fin

    @property
    def masked(self) -> bool:
        return self.frame.mask is not None

    @property
    def is_control(self) -> bool:
        return self.frame.opcode >= 0x8

    @property
    def text(self) -> str | None:
        """The payload as UTF-8 text, or None when it is not text."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @property
    def close(self) -> tuple[int, str] | None:
        """``(code, reason)`` of a Close frame, else None."""
        if self.frame.opcode != Opcode.CLOSE:
            return None
        try:
            return parse_close(self.frame.payload)
        except RemoteProtocolError:
            return None

    def summary(self) -> str:
        flags = []
        if self.masked:
            flags.append("masked")
        if not self.fin:
            flags.append("more fragments follow")
        if self.frame.rsv1 and self.compressed:
            flags.append("RSV1: compressed (permessage-deflate)")
        if self.inflated is not None:
            flags.append(f"{len(self.frame.payload)} B → {len(self.inflated)} B")
        head = self.kind + (f" ({', '.join(flags)})" if flags else "")
        return f"{head}: {self._payload_preview()}" + (f"  !! {self.problem}" if self.problem
                                                        else "")

    def _payload_preview(self) -> str:
        if self.frame.opcode == Opcode.CLOSE:
            close = self.close
            if close is None:
                return f"bad close body {self.frame.payload!r}"
            code, reason = close
            return f"{code} {reason!r}" if reason else str(code)
        payload = self.payload
        if not payload:
            return "(empty)"
        text = self.text
        if text is not None and self.frame.opcode != Opcode.BINARY:
            return repr(text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…")
        shown = payload[:12].hex(" ")
        return f"{len(payload)} B {shown}{' …' if len(payload) > 12 else ''}"

    def explain(self) -> str:
        """The codec's field-by-field table, plus the bystander's notes."""
        lines = [self.frame.explain(self.compressed)]
        if self.inflated is not None:
            lines.append(f"inflated (permessage-deflate): {self.inflated[:200]!r}")
        if self.problem:
            lines.append(f"breaks RFC 6455: {self.problem}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        masked = ", masked" if self.masked else ""
        title = f"{self.kind} frame, {len(self.frame.payload)}-byte payload{masked}"
        return render_html(title, self.frame.fields(self.compressed))


@dataclass(frozen=True)
class Deflate:
    """What the handshake negotiated for ``permessage-deflate`` (RFC 7692 §7)."""

    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False

    @classmethod
    def from_header(cls, value: str | None) -> Deflate | None:
        """Parse a response's ``Sec-WebSocket-Extensions``; None if deflate is off."""
        for offer in (value or "").split(","):
            params = [p.strip().lower() for p in offer.split(";")]
            if params and params[0] == "permessage-deflate":
                return cls(
                    client_no_context_takeover="client_no_context_takeover" in params,
                    server_no_context_takeover="server_no_context_takeover" in params,
                )
        return None


class FrameReader:
    """Cut one direction of an upgraded connection into :class:`FrameView` items.

    Never raises for the peer's mistakes: a broken rule is noted on the frame;
    a stream that cannot be cut any further sets :attr:`error`, and
    :meth:`take_buffer` returns the bytes not yet part of a frame.
    """

    def __init__(self, *, from_client: bool, deflate: Deflate | None = None) -> None:
        self.from_client = from_client
        self._parser = FrameParser(expect_masked=None, strict=False)
        # our own copy of the bytes of the frame in progress: the parser
        # consumes a header before its payload has arrived
        self._pending = bytearray()
        self.error: RemoteProtocolError | None = None
        self._deflate = deflate
        self._inflater = zlib.decompressobj(-15) if deflate else None
        self._reset_inflater = bool(deflate) and (
            deflate.client_no_context_takeover if from_client
            else deflate.server_no_context_takeover
        )
        self._compressed_message: bytearray | None = None

    def receive(self, data: bytes) -> list[FrameView]:
        if self.error is not None:
            self._pending += data
            return []
        self._pending += data
        self._parser.feed(data)
        views = []
        try:
            for frame in self._parser.frames():
                view = self._view(frame)
                del self._pending[: view.nbytes]
                views.append(view)
        except RemoteProtocolError as exc:
            self.error = exc
        return views

    def take_buffer(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data

    def _view(self, frame: Frame) -> FrameView:
        problem = None
        rsv1_allowed = self._deflate is not None and frame.opcode in (
            Opcode.TEXT, Opcode.BINARY
        )
        checked = frame
        if rsv1_allowed and frame.rsv1:
            # the deflate extension owns RSV1 on a message's first frame
            checked = Frame(frame.opcode, frame.payload, frame.fin, False, frame.rsv2,
                            frame.rsv3, frame.mask, frame.header)
        try:
            check_frame(checked, expect_masked=self.from_client)
        except RemoteProtocolError as exc:
            problem = exc.reason
        # RSV1 marks a message's first frame; its continuations are compressed too
        compressed = self._inflater is not None and frame.opcode < 0x8 and (
            frame.rsv1 if frame.opcode != Opcode.CONT else self._compressed_message is not None)
        inflated = self._inflate(frame)
        return FrameView(frame, self.from_client, problem, inflated, compressed)

    def _inflate(self, frame: Frame) -> bytes | None:
        if self._inflater is None or frame.opcode >= 0x8:
            return None
        if frame.opcode != Opcode.CONT:
            self._compressed_message = bytearray() if frame.rsv1 else None
        if self._compressed_message is None:
            return None
        self._compressed_message += frame.payload
        if not frame.fin:
            return None
        data = bytes(self._compressed_message) + b"\x00\x00\xff\xff"
        self._compressed_message = None
        try:
            inflated = self._inflater.decompress(data)
        except zlib.error:
            return None
        if self._reset_inflater:
            self._inflater = zlib.decompressobj(-15)
        return inflated
