"""Event-log stores (I/O), and :func:`open_log`, which picks one by name.

* ``memory`` — :class:`wsdemo.core.eventlog.MemoryEventLog` (sans-I/O; tests and demos);
* a file path or ``sqlite:PATH`` — :mod:`~wsdemo.stores.sqlite`, the embedded default;
* ``redis://…`` — :mod:`~wsdemo.stores.redis` (and :mod:`~wsdemo.stores.redis_presence`),
  for several servers sharing rooms, order and presence.

Every store keeps the rules of :mod:`wsdemo.core.eventlog`: seq, dedupe, resume,
and retention per room by events and by bytes (``max_events``, ``max_bytes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["KINDS", "open_log"]

KINDS = "'memory', a SQLite file (PATH or sqlite:PATH), or redis://HOST:PORT/DB"


def open_log(spec: str | Path | None, **options: Any) -> Any:
    """``None``/``"memory"``: in memory; ``path``/``sqlite:path``: SQLite; ``redis://``: Redis.

    ``options`` go to the store's constructor as keywords; every store takes
    ``max_events``, ``max_bytes`` (stored bytes per room, default
    :data:`~wsdemo.core.eventlog.DEFAULT_MAX_BYTES`) and ``max_ids``, e.g.
    ``open_log(where, max_bytes=16 * 1024 * 1024)``.
    """
    if spec is None or str(spec) == "memory":
        from ..core.eventlog import MemoryEventLog

        return MemoryEventLog(**options)
    text = str(spec)
    scheme = text.partition("://")[0].lower() if "://" in text else None
    if scheme is not None and scheme not in ("redis", "rediss", "unix", "sqlite"):
        raise ValueError(f"unknown event log {text!r}: use {KINDS}")
    if text.startswith(("redis://", "rediss://", "unix://")):
        try:
            from .redis import RedisEventLog  # type: ignore[import-not-found]
        except ImportError:
            raise ValueError(f"event log {text}: the Redis backend is not available") from None
        return RedisEventLog(text, **options)
    if text.startswith("sqlite:"):
        text = text.removeprefix("sqlite:").removeprefix("//")
    from .sqlite import SQLiteEventLog

    return SQLiteEventLog(text, **options)
