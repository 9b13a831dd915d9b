"""The wire tap: a recording TCP proxy, and the sans-I/O decoders that read what it saw.

* :mod:`~wsdemo.tap.proxy` — :class:`Tap`, the proxy (I/O: asyncio streams), and its CLI;
* :mod:`~wsdemo.tap.capture` — :class:`Capture`: chunks and the messages they decode to;
* :mod:`~wsdemo.tap.decode` — one connection's bytes: HTTP until a ``101``, frames after;
* :mod:`~wsdemo.tap.http`, :mod:`~wsdemo.tap.frames`, :mod:`~wsdemo.tap.jupyter` — HTTP
  messages, WebSocket frames (with permessage-deflate), Jupyter kernel messages;
* :mod:`~wsdemo.tap.view` — text and HTML tables, the sequence diagram.

Every module but ``proxy`` is sans-I/O (``tests/test_layers.py`` checks it), so
names are imported on first use: ``import wsdemo.tap.http`` does not load asyncio.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Tap": "proxy",
    "start_tap": "proxy",
    "parse_target": "proxy",
    "Capture": "capture",
    "Chunk": "capture",
    "Message": "capture",
    "Direction": "decode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wsdemo.tap' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
