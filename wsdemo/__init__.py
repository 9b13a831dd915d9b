"""wsdemo — what actually changes when a connection becomes WebSocket.

The package behind the course's notebooks: a Tornado control server that drives
ipywidgets, its client, the wire codec and tap that show the upgrade byte by
byte, and the pieces that add what WebSocket does not give you.

Names are imported on first use, so ``import wsdemo.protocol`` (sans-I/O) does
not pull in Tornado.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ControlServer": "server",
    "Room": "server",
    "ControlClient": "client",
    "ConnectError": "client",
    "ConnectionClosed": "client",
    "ServerError": "client",
    "WidgetBridge": "bridge",
    "ControlSpec": "controls",
    "Event": "eventlog",
    "Appended": "eventlog",
    "MemoryEventLog": "eventlog",
    "SQLiteEventLog": "sqlite_log",
    "EventLogError": "sqlite_log",
    "open_log": "logs",
    "ReconnectingClient": "reconnect",
    "Backoff": "reconnect",
    "Principal": "access",
    "AccessDenied": "access",
    "OpenAccess": "access",
    "Tap": "tap",
    "Capture": "tap",
    "start_tap": "tap",
    "JWTAccess": "auth",
    "KeyRing": "auth",
    "InvalidToken": "auth",
    "issue_token": "auth",
    "SUBPROTOCOL": "protocol",
    "MAX_MESSAGE_BYTES": "protocol",
    "CloseCode": "protocol",
    "ErrorCode": "protocol",
    "ProtocolError": "protocol",
    "ProtocolViolation": "protocol",
    "parse_client_message": "protocol",
}

__all__ = sorted([*_EXPORTS, "launch", "connect"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wsdemo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def launch(port: int = 0, host: str = "127.0.0.1", **options: Any) -> ControlServer:
    """Start the control server on the running loop (or return the one already running)."""
    from .server import ControlServer

    return ControlServer.launch(port, host, **options)


async def connect(url: str, **options: Any) -> ControlClient:
    """Open a :class:`ControlClient` to ``url`` (host:port, http://… or ws://…/ws)."""
    from .client import ControlClient

    return await ControlClient.connect(url, **options)


if TYPE_CHECKING:
    from .client import ControlClient
    from .server import ControlServer
