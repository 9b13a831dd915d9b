"""wsdemo — what actually changes when a connection becomes WebSocket.

The package behind the course's notebooks: a Tornado control server that drives
ipywidgets, its client, the wire codec and tap that show the upgrade byte by
byte, and the pieces that add what WebSocket does not give you.
"""

from __future__ import annotations

__version__ = "0.1.0"
