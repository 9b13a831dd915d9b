"""Pick an event log by name: ``memory``, a SQLite file path, or (later) a Redis URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["open_log"]


def open_log(spec: str | Path | None, **options: Any) -> Any:
    """``None``/``"memory"`` → in memory; ``path`` or ``sqlite:path`` → a SQLite file."""
    if spec is None or str(spec) == "memory":
        from .eventlog import MemoryEventLog

        return MemoryEventLog(**options)
    text = str(spec)
    if text.startswith(("redis://", "rediss://", "unix://")):
        try:
            from .redis_log import RedisEventLog  # type: ignore[import-not-found]
        except ImportError:
            raise ValueError(f"event log {text}: the Redis backend is not available") from None
        return RedisEventLog(text, **options)
    if text.startswith("sqlite:"):
        text = text.removeprefix("sqlite:").removeprefix("//")
    from .sqlite_log import SQLiteEventLog

    return SQLiteEventLog(text, **options)
