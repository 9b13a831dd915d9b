"""Server-Sent Events on the wire: the ``text/event-stream`` format, written and read.

No sockets here: lesson 02's SSE server and client (:mod:`wsdemo.lab.keepalive`)
use these functions, a test drives them with bytes, and :func:`read_event_stream`
reads a tap's capture of an SSE response.

The format is defined by the WHATWG HTML Standard, §9.2 "Server-sent events"
(https://html.spec.whatwg.org/multipage/server-sent-events.html):

* the response is ``Content-Type: text/event-stream``, UTF-8, and never ends
  while the server has events to send (§9.2.5);
* an event is a block of ``field: value`` lines closed by a blank line; ``data``
  lines are joined with a line feed, ``id`` sets the *last event ID*, which
  outlives the event, ``event`` names the type (default ``message``), ``retry``
  sets the reconnection time in milliseconds, a line starting with ``:`` is a
  comment (§9.2.6);
* when the connection drops, the browser's ``EventSource`` waits the
  reconnection time and asks again, with a ``Last-Event-ID`` request header
  carrying the last event ID it saw (§9.2.3, §9.2.4): the server can resume.

Over HTTP/1.1 a response of unknown length travels in chunked transfer coding
(RFC 9112 §7.1), so the event stream sits inside chunks; :class:`ChunkedDecoder`
takes them off.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..tap.decode import Direction
from ..tap.http import HttpMessage, parse_head

if TYPE_CHECKING:
    from ..tap.capture import Capture

__all__ = [
    "ChunkedDecoder",
    "EVENT_STREAM",
    "EventStreamParser",
    "EventStreamView",
    "SseEvent",
    "StreamEvent",
    "format_event",
    "read_event_stream",
]

EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event as ``EventSource`` would hand it to a page.

    ``last_event_id`` is the last event ID *at dispatch* (it may come from an
    earlier event: the ID persists, §9.2.6); ``retry`` is the reconnection time
    (ms) the stream had set by then, if any.
    """

    data: str
    type: str = "message"
    last_event_id: str = ""
    retry: int | None = None


def format_event(data: str | None, *, id: str | int | None = None, event: str | None = None,
                 retry: int | None = None) -> bytes:
    """One event's bytes: ``id:``, ``event:``, ``retry:``, a ``data:`` per line, a blank line.

    A line break inside ``data`` becomes a second ``data:`` line (the reader
    joins them again with ``\\n``); ``data=None`` writes a block with no data,
    which sets the id or the reconnection time and dispatches nothing. Values
    that cannot be written — a line break in ``id`` or ``event``, U+0000 in
    ``id`` (a reader would ignore the line), a negative ``retry`` — raise
    ``ValueError``.
    """
    lines: list[str] = []
    if id is not None:
        text = str(id)
        if any(c in text for c in "\r\n\0"):
            raise ValueError(f"an event id cannot hold CR, LF or NUL: {text!r}")
        lines.append(f"id: {text}")
    if event is not None:
        if any(c in event for c in "\r\n") or not event:
            raise ValueError(f"an event type must be one non-empty line: {event!r}")
        lines.append(f"event: {event}")
    if retry is not None:
        if not isinstance(retry, int) or retry < 0:
            raise ValueError(f"retry is a whole number of milliseconds >= 0, got {retry!r}")
        lines.append(f"retry: {retry}")
    if not lines and data is None:
        raise ValueError("an event needs data, an id, a type or a retry")
    if data is not None:
        for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            lines.append(f"data: {line}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class EventStreamParser:
    """Read an event stream incrementally, as §9.2.6 says a user agent must.

    ``feed(data)`` takes bytes in any pieces (a UTF-8 character or a CRLF may be
    split between two) and returns the events they completed. An event with no
    ``data`` line is not dispatched, but its ``id`` still counts. An unfinished
    block at the end of the stream is dropped, as a browser drops it: only what
    a blank line closed was sent.
    """

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._first = True
        self._data: list[str] = []
        self._type = ""
        self._id = last_event_id
        self._in_block = False
        self._after_cr = False

    @property
    def between_blocks(self) -> bool:
        """True when the text read so far ends with a complete block (or is empty)."""
        return not self._in_block and not self._text

    def feed(self, data: bytes) -> list[SseEvent]:
        text = self._decoder.decode(data)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        self._text += text
        events: list[SseEvent] = []
        while True:
            line, ended = self._next_line()
            if not ended:
                return events
            event = self._process(line)
            if event is not None:
                events.append(event)

    def _next_line(self) -> tuple[str, bool]:
        text = self._text
        if self._after_cr and text:
            self._after_cr = False
            if text.startswith("\n"):
                text = text[1:]  # the LF of a CRLF whose CR ended the previous line
        cut = min((i for i in (text.find("\r"), text.find("\n")) if i >= 0), default=-1)
        if cut < 0:
            self._text = text
            return "", False
        # A CR ends the line at once: waiting for a possible LF would hold back an
        # event closed by CR CR at the end of what has arrived.
        end = cut + 1
        if text[cut] == "\r":
            if text[end:end + 1] == "\n":
                end += 1
            elif end == len(text):
                self._after_cr = True
        self._text = text[end:]
        return text[:cut], True

    def _process(self, line: str) -> SseEvent | None:
        if line == "":
            self._in_block = False
            return self._dispatch()
        self._in_block = True
        if line.startswith(":"):
            return None  # a comment; servers send them to keep a quiet stream alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None  # any other field is ignored

    def _dispatch(self) -> SseEvent | None:
        self.last_event_id = self._id
        data, kind = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return SseEvent("\n".join(data), kind or "message", self.last_event_id, self.retry)


class ChunkedDecoder:
    """Take chunked transfer coding (RFC 9112 §7.1) off a body, incrementally.

    ``feed(data)`` returns the body bytes it freed; :attr:`consumed` counts the
    coded bytes read, so a caller can tell which wire bytes carried what.
    ``done`` is True after the last (zero-size) chunk and its trailer.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "size"
        self._remaining = 0
        self.consumed = 0
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        buf = self._buffer
        while not self.done:
            if self._state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise ValueError("no end of chunk-size line in 1 KiB")
                    break
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                try:
                    self._remaining = int(line, 16)
                except ValueError:
                    raise ValueError(f"bad chunk-size line {bytes(buf[:end])[:40]!r}") from None
                self._take(end + 2)
                self._state = "data" if self._remaining else "trailer"
            elif self._state == "data":
                n = min(self._remaining, len(buf))
                if not n:
                    break
                out += buf[:n]
                self._take(n)
                self._remaining -= n
                if not self._remaining:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
                self._take(2)
                self._state = "size"
            else:  # trailer lines, up to an empty one
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                self._take(end + 2)
                self.done = end == 0
        return bytes(out)

    @property
    def between_chunks(self) -> bool:
        """True when every byte fed so far belongs to a finished chunk."""
        return self._state == "size" and not self._buffer

    def _take(self, n: int) -> None:
        del self._buffer[:n]
        self.consumed += n


# --- reading a capture ---------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    """A block of the stream as it crossed the tap: when it arrived, what it cost.

    ``nbytes`` counts the wire bytes from the end of the previous block (or of
    the response head) to the end of this one: its lines, and the chunk
    framing around them. ``event`` is None for a block that dispatched
    nothing (a ``retry:`` alone, a comment); ``text`` is the block as sent.
    """

    event: SseEvent | None
    t: float
    nbytes: int
    text: str = ""


@dataclass(frozen=True)
class EventStreamView:
    """One SSE connection read from a capture: the request, the response head, the events.

    ``trailing`` is the coded bytes after the last complete event (an event cut
    off by a dropped connection, or the end of the chunked body).
    """

    conn: int
    request: HttpMessage
    request_t: float
    status_line: str
    headers: tuple[tuple[str, str], ...]
    head_nbytes: int
    head_t: float
    events: tuple[StreamEvent, ...]
    trailing: int

    def table(self, t0: float | None = None) -> str:
        """One line per request, response head and event, like ``Capture.table``."""
        rows = [("client→server", len(self.request.raw), "http", self.request.start_line),
                ("server→client", self.head_nbytes, "http",
                 f"{self.status_line}  (Content-Type: {self.header('content-type')})")]
        for e in self.events:
            if e.event is None:
                rows.append(("server→client", e.nbytes, "block", " | ".join(e.text.split("\n"))))
                continue
            data = e.event.data if len(e.event.data) <= 40 else e.event.data[:39] + "…"
            rows.append(("server→client", e.nbytes, "event",
                         f"id: {e.event.last_event_id}  data: {data}"))
        lines = [f"{'#':>3} {'direction':14} {'bytes':>6} {'kind':5} what"]
        for i, (direction, n, kind, what) in enumerate(rows):
            lines.append(f"{i:>3} {direction:14} {n:>6} {kind:5} {what}")
        return "\n".join(lines)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


def read_event_stream(capture: Capture, conn: int | None = None) -> EventStreamView:
    """Read the SSE response on ``conn`` (default: the capture's first connection).

    The tap decodes a response once it has all of it; an event stream is
    never all there, so this reads the raw server→client chunks instead: the
    response head, then chunk by chunk, each event timed by the chunk that
    completed it. The stream is the connection's last response: a browser
    may send its EventSource request on a kept-alive connection that already
    carried other exchanges, which are skipped. ``ValueError`` if the
    connection holds no event stream.
    """
    if conn is None:
        if not capture.connections:
            raise ValueError("the capture holds no connection")
        conn = min(capture.connections)
    requests = [m for m in capture.http if m.conn == conn and m.http.is_request]
    answered = [m for m in capture.http if m.conn == conn and not m.http.is_request]
    if len(requests) <= len(answered):
        raise ValueError(f"connection {conn}: no request still being answered")
    request = requests[len(answered)]
    skip = answered[-1].offset + answered[-1].nbytes if answered else 0
    chunks, seen = [], 0
    for c in capture.chunks:
        if c.conn != conn or c.direction is not Direction.S2C or c.eof:
            continue
        seen += len(c.data)
        if seen > skip:
            # the part of this chunk past the complete responses
            chunks.append((c.data[max(0, len(c.data) - (seen - skip)):], c.t))
    raw = b"".join(data for data, _ in chunks)
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError(f"connection {conn}: no complete response head")
    head_len = end + 4
    status_line, headers = parse_head(raw[:head_len])
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    if content_type.split(";")[0].strip().lower() != EVENT_STREAM:
        raise ValueError(f"connection {conn}: the response is {content_type or 'untyped'}, "
                         f"not {EVENT_STREAM}")
    chunked = any(k.lower() == "transfer-encoding" and "chunked" in v.lower()
                  for k, v in headers)
    # wire offset at which each chunk ends, to time what completed in it
    ends, total = [], 0
    for data, t in chunks:
        total += len(data)
        ends.append((total, t))

    def time_at(offset: int) -> float:
        return next(t for e, t in ends if e >= offset)

    parser = EventStreamParser()
    decoder = ChunkedDecoder() if chunked else None
    events: list[StreamEvent] = []
    last_end = offset = head_len
    body = raw[head_len:]
    done: list[tuple[SseEvent, float, int]] = []  # dispatched, their chunk's end not yet read
    text = b""  # body bytes since the last block boundary
    pos = 0
    for chunk_end, t in ends:
        if chunk_end <= head_len:
            continue
        piece = body[pos:chunk_end - head_len]
        pos = chunk_end - head_len
        # Byte by byte, so that each event is charged the wire bytes up to the end
        # of the HTTP chunk that carried it (lesson-sized captures: a few kB).
        for i in range(len(piece)):
            offset += 1
            freed = decoder.feed(piece[i:i + 1]) if decoder else piece[i:i + 1]
            text += freed
            dispatched = parser.feed(freed)
            done += [(event, t, offset) for event in dispatched]
            if dispatched:
                text = b""
            if not (parser.between_blocks and (decoder is None or decoder.between_chunks)):
                continue
            if done:
                # several events in one HTTP chunk: the last one pays the chunk's framing
                ends_at = [at for _, _, at in done[:-1]] + [offset]
                for (event, when, _), end_at in zip(done, ends_at, strict=True):
                    events.append(StreamEvent(event, when, end_at - last_end))
                    last_end = end_at
                done = []
            elif text.strip():
                events.append(StreamEvent(None, t, offset - last_end,
                                          text.decode("utf-8", "replace").strip()))
                last_end = offset
                text = b""
    return EventStreamView(
        conn=conn, request=request.http, request_t=request.t, status_line=status_line,
        headers=headers, head_nbytes=head_len, head_t=time_at(head_len),
        events=tuple(events), trailing=len(raw) - last_end,
    )
