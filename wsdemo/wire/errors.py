"""Errors of the wire codec, and whose fault each one is.

Exception tree::

    WireError                       base class: anything this codec raises on purpose
    ├── LocalProtocolError          *you* misused the API (send after close, an
    │                               invalid close code, a 200-byte ping, ...)
    └── RemoteProtocolError         the *peer* broke RFC 6455;
        │                           ``close_code`` is the Close code to send (§7.4.1)
        └── HandshakeError          the opening handshake is wrong (RFC 6455 §4);
                                    ``status``/``headers`` are the HTTP refusal a
                                    server should answer with (None on the client
                                    side, which just drops the TCP connection)

Following h11 and wsproto, the split tells the caller what to do next: a
``LocalProtocolError`` is a bug in the calling code, a ``RemoteProtocolError``
means "fail the WebSocket connection" (§7.1.7) with the code it carries.
"""

from __future__ import annotations

__all__ = ["HandshakeError", "LocalProtocolError", "RemoteProtocolError", "WireError"]


class WireError(Exception):
    """Base class of every error the codec raises deliberately."""


class LocalProtocolError(WireError):
    """The caller asked for something RFC 6455 forbids; nothing was sent."""


class RemoteProtocolError(WireError):
    """The peer sent bytes that break RFC 6455.

    ``close_code`` is the status code to put in the Close frame that fails the
    connection (§7.1.7, codes in §7.4.1): 1002 protocol error by default, 1007
    for invalid UTF-8, 1009 for a message above the size limit.
    """

    def __init__(self, reason: str, close_code: int = 1002) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


class HandshakeError(RemoteProtocolError):
    """The opening handshake (RFC 6455 §4) is invalid.

    On the server side ``status`` and ``headers`` say which HTTP answer to send
    (§4.2.1: 400 for a malformed request, §4.4: 426 plus
    ``Sec-WebSocket-Version: 13`` for an unsupported version, 403 for a refused
    Origin, §10.2). On the client side ``status`` is None: §4.1 says the client
    then fails the connection without sending anything.
    """

    def __init__(
        self,
        reason: str,
        status: int | None = 400,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(reason, close_code=1002)
        self.status = status
        self.headers = headers
