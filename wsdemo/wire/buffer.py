"""A byte buffer that generator-based parsers read from.

Parsers in this package are generators in the style of python-websockets:
they ``yield from buffer.read_exact(n)`` and are suspended (they ``yield``)
until enough bytes have been fed. The same parser therefore gives the same
result whether the bytes arrive one at a time or all at once — the property a
lesson relies on when it feeds a frame byte by byte.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Generic, TypeVar

from .errors import HandshakeError, RemoteProtocolError

__all__ = ["Buffer", "Pump"]

T = TypeVar("T")


class Buffer:
    """Bytes received and not yet parsed, plus how many were consumed so far."""

    def __init__(self) -> None:
        self._data = bytearray()
        self.consumed = 0  # absolute offset of the first unread byte in the stream
        self.eof = False

    def feed(self, data: bytes) -> None:
        self._data += data

    def feed_eof(self) -> None:
        self.eof = True

    def __len__(self) -> int:
        return len(self._data)

    def take_all(self) -> bytes:
        """Remove and return everything unread (the trailing data at a protocol switch)."""
        data = bytes(self._data)
        self._data.clear()
        self.consumed += len(data)
        return data

    def peek(self) -> bytes:
        return bytes(self._data)

    def read_exact(self, n: int) -> Generator[None, None, bytes]:
        """Wait until ``n`` bytes are available, then consume and return them."""
        while len(self._data) < n:
            if self.eof:
                raise RemoteProtocolError(
                    f"stream ended {n - len(self._data)} bytes short", close_code=1006
                )
            yield
        data = bytes(self._data[:n])
        del self._data[:n]
        self.consumed += n
        return data

    def read_some(self, n: int) -> Generator[None, None, bytes]:
        """Wait until at least one byte is there, then consume and return up to ``n``.

        For a frame's payload: what has arrived can be checked (UTF-8) before
        the rest of the frame is in.
        """
        while not self._data:
            if self.eof:
                raise RemoteProtocolError(f"stream ended {n} bytes short", close_code=1006)
            yield
        data = bytes(self._data[:n])
        del self._data[:n]
        self.consumed += len(data)
        return data

    def read_line(self, limit: int) -> Generator[None, None, bytes]:
        """Consume and return one CRLF-terminated line (without the CRLF).

        ``limit`` bounds the line length so a peer cannot make us buffer
        forever; the error carries HTTP 400 because lines only occur in the
        HTTP head.
        """
        searched = 0
        while True:
            # Start the search one byte back so a CR at the end of the previous
            # chunk still pairs with an LF at the start of this one.
            end = self._data.find(b"\r\n", max(searched - 1, 0))
            if end != -1:
                break
            searched = len(self._data)
            if searched > limit:
                raise HandshakeError(f"HTTP line longer than {limit} bytes", status=400)
            if self.eof:
                raise HandshakeError("stream ended inside the HTTP head", status=400)
            yield
        if end > limit:
            raise HandshakeError(f"HTTP line longer than {limit} bytes", status=400)
        line = bytes(self._data[:end])
        del self._data[: end + 2]
        self.consumed += end + 2
        return line


class Pump(Generic[T]):
    """Drive one parser generator: resume it after each feed until it returns."""

    def __init__(self, parser: Generator[None, None, T]) -> None:
        self._parser = parser
        self.done = False
        self.result: T | None = None
        self.resume()

    def resume(self) -> bool:
        """Run the parser as far as the buffered bytes allow; True once it has returned."""
        if not self.done:
            try:
                next(self._parser)
            except StopIteration as stop:
                self.done = True
                self.result = stop.value
        return self.done
