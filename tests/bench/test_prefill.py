"""The bench's SQLite history is written in one transaction, bypassing append: it must
be the very rows append writes (sizes and each room's byte total included)."""

from __future__ import annotations

from wsdemo.bench.servers import BENCH_DATA, HISTORY_ROOM, _prefill_sqlite
from wsdemo.stores.sqlite import SCHEMA_VERSION, SQLiteEventLog


async def test_the_prefilled_history_is_what_append_would_have_written(tmp_path):
    events = 300
    fast, slow = str(tmp_path / "fast.sqlite"), str(tmp_path / "slow.sqlite")
    await _prefill_sqlite(fast, events, SCHEMA_VERSION)
    log = SQLiteEventLog(slow, synchronous="NORMAL")
    for seq in range(1, events + 1):
        await log.append(HISTORY_ROOM, f"e{seq:07d}", "bench", "publish", BENCH_DATA)
    await log.close()
    a, b = SQLiteEventLog(fast), SQLiteEventLog(slow)
    try:
        assert await a.held_bytes(HISTORY_ROOM) == await b.held_bytes(HISTORY_ROOM) > 0
        rows = [[(e.seq, e.id, e.sender, e.kind, e.data) for e in await log_.read_after(
            HISTORY_ROOM, 0)] for log_ in (a, b)]
        assert rows[0] == rows[1] and len(rows[0]) == events
        # And the prefilled log goes on appending where the history ends.
        appended = await a.append(HISTORY_ROOM, "next", "bench", "publish", BENCH_DATA)
        assert appended.event.seq == events + 1
    finally:
        await a.close()
        await b.close()
