"""An event log of each kind for a test: memory, a SQLite file, or a real Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.redis import running_redis


@contextlib.asynccontextmanager
async def log_where(kind: str, folder: Path, redis_server_path: str | None = None
                    ) -> AsyncIterator[str]:
    """What ``open_log`` takes for ``kind``; a Redis is started (and stopped) for it."""
    if kind == "memory":
        yield "memory"
    elif kind == "sqlite":
        yield str(folder / "events.sqlite")
    else:
        assert redis_server_path, "a Redis log needs the redis_server_path fixture"
        async with running_redis(redis_server_path, folder) as redis:
            yield redis.url
