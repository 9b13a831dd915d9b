"""Frames written straight to a session's TCP stream: the one place below ``write_message``.

Why it exists: Tornado's ``WebSocketHandler.write_message`` frames the message
for that one client and wraps the write in a new Task. A broadcast to 1,000
members then costs 1,000 framings and 1,000 Tasks per event — the benchmark's
profile showed the server's time going there, not to the work. A server frame
is not masked (RFC 6455 §5.1), so the same bytes are right for every member:
:func:`text_frame` builds them once, and :class:`Outlet` hands them to each
member's stream with one call and no Task or coroutine.

What this relies on, beyond Tornado's documented API (``tests/server/test_transport.py``
fails if an upgrade of Tornado changes any of it):

* after the ``101``, ``handler.ws_connection.stream`` is the connection's
  ``IOStream``, and Tornado writes its own frames (pings, pongs, the close)
  through the same ``IOStream.write``, whole and in call order — so a frame
  written here never interleaves with one of Tornado's;
* ``IOStream.write`` sends at once what the socket takes, keeps the rest, and
  returns a Future that the stream itself marks as retrieved (no "exception
  was never retrieved" when the peer goes away);
* ``len(stream._write_buffer)`` is the number of bytes not yet taken by the
  socket (Tornado's own ``max_write_buffer_size`` check reads the same);
* ``stream.socket`` is the connection's non-blocking socket. When nothing waits
  in the stream's buffer, a frame is sent on it directly (``socket.send``), and
  only what the socket does not take goes through ``IOStream.write``: order is
  kept (the buffer was empty), and the profile's largest cost — a Future, a
  memoryview and a write loop per frame per member — is paid only by a client
  that is behind. TLS streams (``SSLIOStream``) always go through ``write``;
* ``ws_connection._compressor`` is ``None`` unless permessage-deflate was
  negotiated. A compressed connection needs its own bytes per message, so it
  falls back to ``write_message``.

Imports Tornado's exceptions only; the caller decides what a full buffer means
(the session closes a slow consumer with 1013).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from tornado.iostream import IOStream, StreamClosedError

__all__ = ["Outlet", "text_frame"]

logger = logging.getLogger("wsdemo.server")

_FIN_TEXT = 0x81  # FIN + opcode 1 (RFC 6455 §5.2)


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n <= 0xFFFF:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload


def frame_payload(frame: bytes) -> bytes:
    """The payload of a frame made by :func:`text_frame` (for the fallback path)."""
    n = frame[1] & 0x7F
    return frame[2 + (0 if n < 126 else 2 if n == 126 else 8):]


class Outlet:
    """Where a session's frames go: its stream, bounded in bytes and in messages.

    :meth:`write` returns ``True`` while the client keeps up, ``False`` once more
    than ``max_bytes`` or ``max_messages`` wait for the socket (the frame is
    queued all the same: the caller closes the slow consumer), and ``None`` when
    the connection is already gone.
    """

    __slots__ = ("_conn", "_handler", "_stream", "_socket", "_waiting", "_last", "max_bytes",
                 "max_messages")

    def __init__(self, handler: Any, *, max_bytes: int, max_messages: int):
        self._handler = handler
        self._conn = handler.ws_connection
        compressed = getattr(self._conn, "_compressor", None) is not None
        self._stream = None if compressed else self._conn.stream
        plain = self._stream is not None and type(self._stream) is IOStream
        self._socket = self._stream.socket if plain else None
        self._waiting = 0  # messages written since the buffer was last empty
        self._last: Any = None  # the newest write's Future: done when all is flushed
        self.max_bytes = max_bytes
        self.max_messages = max_messages

    @property
    def buffered(self) -> int:
        """Bytes written but not yet taken by the socket."""
        stream = self._stream if self._stream is not None else self._conn.stream
        return len(stream._write_buffer)

    def write(self, frame: bytes) -> bool | None:
        stream = self._stream
        sock = self._socket
        if sock is not None and not stream._write_buffer:
            if stream.closed():
                return None
            try:
                sent = sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:  # reset, broken pipe: IOStream.write below sees it and closes
                sent = 0
            if sent == len(frame):
                self._waiting = 0
                return True
            frame = frame[sent:]
        try:
            if stream is None:
                self._last = self._handler.write_message(frame_payload(frame))
                self._last.add_done_callback(_retrieve)
            else:
                self._last = stream.write(frame)
        except StreamClosedError:
            return None
        except Exception:  # tornado.websocket.WebSocketClosedError, or worse
            if self._conn is None or self._conn.is_closing():
                return None
            raise
        buffered = self.buffered
        if buffered == 0:
            self._waiting = 0
            return True
        self._waiting += 1
        return buffered <= self.max_bytes and self._waiting <= self.max_messages

    async def flushed(self) -> None:
        """Wait until everything written so far has been taken by the socket."""
        if self._last is not None and self.buffered:
            try:
                await self._last
            except Exception:  # the connection went away: the session's close says so
                pass


def _retrieve(future: Any) -> None:
    if not future.cancelled():
        future.exception()
