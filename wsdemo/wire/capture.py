"""Read what one direction of a TCP connection carried: an HTTP head, then frames.

This is the codec's view for a wire tap: it *reports* what breaks RFC 6455
instead of failing, and keeps every item's byte offsets in the stream, so the
same capture can be read twice — as HTTP text, then as frames (the course's
point 3)::

    decoder = decode_stream(client_to_server_bytes, sender="client")
    decoder.head            # CapturedHead(start=0, end=230, head=HandshakeRequest(...))
    decoder.frames          # [CapturedFrame(start=230, end=241, frame=Frame(...), problem=None)]
    decoder.rest            # bytes of an incomplete last item, or what is not WebSocket
    print(decoder.explain())

Feed a live stream chunk by chunk with :class:`StreamDecoder` instead.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Literal

from .buffer import Buffer
from .errors import RemoteProtocolError, WireError
from .explain import Field, render_html, render_text
from .frames import Frame, Opcode, check_frame, parse_close, read_frame
from .handshake import HandshakeRequest, HandshakeResponse, read_request, read_response

__all__ = ["CapturedFrame", "CapturedHead", "StreamDecoder", "decode_stream"]

Sender = Literal["client", "server"]


@dataclass(frozen=True)
class CapturedHead:
    """The HTTP head at bytes ``start``..``end - 1`` of the stream."""

    start: int
    end: int
    head: HandshakeRequest | HandshakeResponse

    def explain(self) -> str:
        return f"bytes {self.start}-{self.end - 1} of the stream\n" + self.head.explain()

    def _repr_html_(self) -> str:
        return f"<p>bytes {self.start}-{self.end - 1} of the stream</p>" + self.head._repr_html_()


@dataclass(frozen=True)
class CapturedFrame:
    """A frame at bytes ``start``..``end - 1``; ``problem`` is the rule it breaks, if any."""

    start: int
    end: int
    frame: Frame
    problem: RemoteProtocolError | None = None

    def _note(self) -> str:
        if self.problem is None:
            return ""
        return f"breaks RFC 6455: {self.problem.reason} (close code {self.problem.close_code})"

    def explain(self) -> str:
        note = self._note()
        return (f"bytes {self.start}-{self.end - 1} of the stream\n" + self.frame.explain()
                + (f"\n{note}" if note else ""))

    def _repr_html_(self) -> str:
        note = self._note()
        return (f"<p>bytes {self.start}-{self.end - 1} of the stream</p>"
                + self.frame._repr_html_() + (f"<p>{note}</p>" if note else ""))


Captured = CapturedHead | CapturedFrame


def _summary(frame: Frame) -> str:
    flags = ["fin" if frame.fin else "not fin"] + (["masked"] if frame.mask is not None else [])
    text = f"{frame.kind} ({', '.join(flags)}) {len(frame.payload)} bytes"
    if frame.opcode in (Opcode.TEXT, Opcode.CONT):
        try:
            shown = frame.payload.decode("utf-8")
        except UnicodeDecodeError:
            return text
        return text + f" {shown[:30]!r}" + ("…" if len(shown) > 30 else "")
    if frame.opcode == Opcode.CLOSE:
        try:
            code, reason = parse_close(frame.payload)
        except RemoteProtocolError:
            return text
        return text + f" code {code} {reason!r}"
    return text


class StreamDecoder:
    """Incremental decoder of one direction of a WebSocket connection.

    ``sender``: who wrote these bytes — ``"client"`` (expects a request,
    then masked frames), ``"server"`` (a response, then unmasked frames), or
    None to tell from the first bytes (``HTTP/`` starts a response).
    ``expect_head=False`` for a capture that starts after the handshake.
    ``check_masking=False`` does not report the masking direction (§5.1) as
    a problem. Nothing raises: a stream that cannot be cut any further sets
    :attr:`error` and stays in :attr:`rest`.
    """

    def __init__(
        self,
        sender: Sender | None = None,
        *,
        expect_head: bool = True,
        check_masking: bool = True,
    ) -> None:
        self.sender = sender
        self.expect_head = expect_head
        self.check_masking = check_masking
        self.head: CapturedHead | None = None
        self.frames: list[CapturedFrame] = []
        self.error: WireError | None = None
        # False once a non-101 answer shows the bytes that follow are not frames.
        self.switched: bool | None = None
        self._buffer = Buffer()
        self._pending = bytearray()  # bytes of the item being decoded, for `rest`
        self._pending_start = 0
        self._new: list[Captured] = []
        self._decoder = self._decode()
        self._running = True
        self._resume()

    @property
    def rest(self) -> bytes:
        """Bytes not decoded into an item: an incomplete one, or non-WebSocket data."""
        return bytes(self._pending)

    def feed(self, data: bytes) -> list[Captured]:
        """Add the next bytes of the stream; return the items they complete."""
        self._buffer.feed(data)
        self._pending += data
        self._resume()
        new, self._new = self._new, []
        return new

    def feed_eof(self) -> None:
        """The stream ended; an incomplete last item becomes :attr:`error`."""
        self._buffer.feed_eof()
        self._resume()

    def _resume(self) -> None:
        if not self._running:
            return
        try:
            next(self._decoder)
        except StopIteration:
            self._running = False
        except WireError as exc:
            self.error = exc
            self._running = False

    def _completed(self, item: Captured) -> None:
        del self._pending[: item.end - self._pending_start]
        self._pending_start = item.end
        self._new.append(item)

    def _decode(self) -> Generator[None, None, None]:
        buffer = self._buffer
        sender = self.sender
        if self.expect_head:
            while sender is None:
                if not buffer and buffer.eof:
                    return  # an empty capture: nothing was sent
                if len(buffer) >= 5 or buffer.eof:
                    sender = "server" if buffer.peek().startswith(b"HTTP/") else "client"
                else:
                    yield
            self.sender = sender
            reader = read_request(buffer) if sender == "client" else read_response(buffer)
            head = yield from reader
            self.head = CapturedHead(0, buffer.consumed, head)
            self._completed(self.head)
            if isinstance(head, HandshakeResponse) and head.status != 101:
                self.switched = False
                return
        self.switched = True
        expect_masked = None if not self.check_masking or sender is None else sender == "client"
        while True:
            while not buffer:
                if buffer.eof:
                    return
                yield
            start = buffer.consumed
            frame = yield from read_frame(buffer)
            try:
                check_frame(frame, expect_masked)
                problem = None
            except RemoteProtocolError as exc:
                problem = exc
            item = CapturedFrame(start, buffer.consumed, frame, problem)
            self.frames.append(item)
            self._completed(item)

    def items(self) -> list[Captured]:
        """The head (if any) then every frame, in stream order."""
        return ([self.head] if self.head else []) + list(self.frames)

    def fields(self) -> list[Field]:
        rows = []
        for item in self.items():
            where = f"{item.start}-{item.end - 1}"
            if isinstance(item, CapturedHead):
                head = item.head
                first = (f"{head.method} {head.target} {head.version}"
                         if isinstance(head, HandshakeRequest)
                         else f"{head.version} {head.status} {head.reason}")
                rows.append(Field(where, "", "HTTP head", first, f"{len(head.headers)} headers"))
            else:
                rows.append(Field(where, "", "frame", _summary(item.frame),
                                  item.problem.reason if item.problem else ""))
        if self._pending:
            end = self._pending_start + len(self._pending) - 1
            rows.append(Field(f"{self._pending_start}-{end}", "", "rest",
                              f"{len(self._pending)} bytes",
                              str(self.error) if self.error else "not a complete item"))
        return rows

    def explain(self) -> str:
        """One row per item: byte range, what it is, what is wrong with it."""
        return render_text(f"stream sent by the {self.sender or 'peer'}", self.fields())

    def _repr_html_(self) -> str:
        return render_html(f"stream sent by the {self.sender or 'peer'}", self.fields())


def decode_stream(
    data: bytes,
    sender: Sender | None = None,
    *,
    expect_head: bool = True,
    check_masking: bool = True,
) -> StreamDecoder:
    """Decode a whole recorded stream (one direction); see :class:`StreamDecoder`."""
    decoder = StreamDecoder(sender, expect_head=expect_head, check_masking=check_masking)
    decoder.feed(data)
    decoder.feed_eof()
    return decoder
