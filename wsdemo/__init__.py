"""wsdemo — what actually changes when a connection becomes WebSocket.

The package behind the course's notebooks: a Tornado control server that drives
ipywidgets, its client, the wire codec and tap that show the upgrade byte by
byte, and the pieces that add what WebSocket does not give you.

Names are imported on first use, so ``import wsdemo.core.protocol`` (sans-I/O)
does not pull in Tornado. The folders are the layers and roles: ``core/`` and
``wire/`` (sans-I/O), ``server/``, ``stores/``, ``client/``, ``auth/``, ``tap/``,
``lab/``, ``bench/`` (I/O); see the README's "The package, by layer".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ControlServer": "server.app",
    "Room": "server.room",
    "ControlClient": "client.connection",
    "ConnectError": "client.connection",
    "ConnectionClosed": "client.connection",
    "ServerError": "client.connection",
    "WidgetBridge": "server.bridge",
    "ControlSpec": "core.controls",
    "Event": "core.eventlog",
    "Appended": "core.eventlog",
    "MemoryEventLog": "core.eventlog",
    "SQLiteEventLog": "stores.sqlite",
    "EventLogError": "stores.sqlite",
    "open_log": "stores",
    "ReconnectingClient": "client.reconnect",
    "Backoff": "client.reconnect",
    "Principal": "core.access",
    "AccessDenied": "core.access",
    "OpenAccess": "core.access",
    "Tap": "tap.proxy",
    "Capture": "tap.capture",
    "start_tap": "tap.proxy",
    "JWTAccess": "auth.tokens",
    "KeyRing": "auth.tokens",
    "InvalidToken": "auth.tokens",
    "issue_token": "auth.tokens",
    "SUBPROTOCOL": "core.protocol",
    "MAX_MESSAGE_BYTES": "core.protocol",
    "CloseCode": "core.protocol",
    "ErrorCode": "core.protocol",
    "ProtocolError": "core.protocol",
    "ProtocolViolation": "core.protocol",
    "parse_client_message": "core.protocol",
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
    from .server.app import ControlServer

    return ControlServer.launch(port, host, **options)


async def connect(url: str, **options: Any) -> ControlClient:
    """Open a :class:`ControlClient` to ``url`` (host:port, http://… or ws://…/ws)."""
    from .client.connection import ControlClient

    return await ControlClient.connect(url, **options)


if TYPE_CHECKING:
    from .client.connection import ControlClient
    from .server.app import ControlServer
