"""The control server (I/O): Tornado serving ``wsdemo.v1``, its page, and the widget bridge.

* :mod:`~wsdemo.server.app` — :class:`ControlServer`: rooms, the log, fan-out, life cycle;
* :mod:`~wsdemo.server.session` — one connection: parse, dispatch, reply, send;
* :mod:`~wsdemo.server.room` — a room's members and presence;
* :mod:`~wsdemo.server.bridge` — ipywidgets as controls, both ways;
* :mod:`~wsdemo.server.page` — the control page (``static/index.html``).

Imports go one way: ``app`` → ``session`` → ``room`` → ``bridge``; each lower module
names what it needs of the server as a small protocol class instead of importing it.
"""

from .app import ControlServer
from .bridge import WidgetBridge
from .room import Room
from .session import Session

__all__ = ["ControlServer", "Room", "Session", "WidgetBridge"]
