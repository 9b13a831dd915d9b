"""wsdemo — what actually changes when a connection becomes WebSocket.

The package behind the course's notebooks: a Tornado control server that drives
ipywidgets, its client, the wire codec and tap that show the upgrade byte by
byte, and the pieces that add what WebSocket does not give you.
"""

from __future__ import annotations

from .client import ConnectError, ConnectionClosed, ControlClient, ServerError
from .controls import ControlSpec
from .eventlog import Appended, Event, MemoryEventLog
from .protocol import (
    MAX_MESSAGE_BYTES,
    SUBPROTOCOL,
    CloseCode,
    ErrorCode,
    ProtocolError,
    ProtocolViolation,
    parse_client_message,
)
from .server import ControlServer

__version__ = "0.1.0"

__all__ = [
    "Appended",
    "CloseCode",
    "ConnectError",
    "ConnectionClosed",
    "ControlClient",
    "ControlServer",
    "ControlSpec",
    "ErrorCode",
    "Event",
    "MAX_MESSAGE_BYTES",
    "MemoryEventLog",
    "ProtocolError",
    "ProtocolViolation",
    "SUBPROTOCOL",
    "ServerError",
    "connect",
    "launch",
    "parse_client_message",
]


def launch(port: int = 0, host: str = "127.0.0.1", **options) -> ControlServer:
    """Start the control server on the running loop (or return the one already running)."""
    return ControlServer.launch(port, host, **options)


async def connect(url: str, **options) -> ControlClient:
    """Open a :class:`ControlClient` to ``url`` (host:port, http://… or ws://…/ws)."""
    return await ControlClient.connect(url, **options)
