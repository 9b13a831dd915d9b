"""The client side (I/O): a ``wsdemo.v1`` client, and one that reconnects and resumes.

* :mod:`~wsdemo.client.connection` — :class:`ControlClient`: one connection, awaitable replies;
* :mod:`~wsdemo.client.reconnect` — :class:`ReconnectingClient`: backoff, resume, an outbox.
"""

from .connection import ConnectError, ConnectionClosed, ControlClient, ServerError, normalize_url
from .reconnect import Backoff, GaveUp, ReconnectingClient

__all__ = ["Backoff", "ConnectError", "ConnectionClosed", "ControlClient", "GaveUp",
           "ReconnectingClient", "ServerError", "normalize_url"]
