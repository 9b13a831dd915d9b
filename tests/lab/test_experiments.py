"""The failure lab: each experiment fails on the bare server exactly as lesson 04 says,
and passes on the control server where the control server has the repair (resume,
dedupe, presence today; tokens, SQLite and a shared log when configured)."""

from __future__ import annotations

import asyncio
import sys

import matplotlib
import pytest

from wsdemo import lab
from wsdemo.core.eventlog import MemoryEventLog

matplotlib.use("Agg")

N = list(range(1, 51))


@pytest.fixture
def bare():
    return lab.BareTarget()


@pytest.fixture
def control():
    return lab.ControlTarget()


# --- the bare server: every experiment fails, with these numbers -----------------------


async def test_bare_authentication(bare):
    r = await lab.authentication(bare)
    assert not r.ok
    assert r.data == {"accepted": True, "joined": True, "acted": True, "refusal": None,
                      "welcomed_as": None}
    assert "cannot tell anyone apart" in r.summary


async def test_bare_authorization(bare):
    r = await lab.authorization(bare)
    assert not r.ok
    assert r.data["read"] and r.data["applied"]


async def test_bare_persistence(bare):
    r = await lab.persistence(bare)
    assert not r.ok
    assert r.data == {"before": [], "after": [], "next_seq": None}
    assert r.summary.startswith("a newcomer could read 0 of 50 earlier messages before "
                                "the restart and 0 after")


async def test_bare_offline_delivery(bare):
    r = await lab.offline_delivery(bare)
    assert not r.ok
    assert r.data["received"] == list(range(1, 11))
    assert r.summary == ("the reader was away for messages 11–50 and, back online, got 0 "
                         "of those 40")


async def test_bare_missed_messages(bare):
    r = await lab.missed_messages(bare)
    assert not r.ok
    assert r.data["received"] == list(range(1, 21)) + list(range(36, 51))
    assert r.data["missing"] == list(range(21, 36))
    assert r.summary.startswith("received 35 of 50, gap at 21–35 — and nothing told")


async def test_bare_duplicates(bare):
    r = await lab.duplicates(bare)
    assert not r.ok
    assert r.data["first_acked"] is False  # the lost ack really was lost
    assert r.data["received"] == [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]
    assert r.timeline.duplicates("observer") == [5]
    assert "the room got it twice" in r.summary


async def test_bare_room_membership(bare):
    r = await lab.room_membership(bare)
    assert not r.ok
    assert r.data["members"] is None and r.data["after_leave"] is None
    assert r.data["leaked_to_bob"] == ["k1", "kitchen-mark"]


async def test_bare_multi_server_runs_two_processes(bare):
    r = await lab.multi_server(bare)
    assert not r.ok
    assert r.data == {"alice": N, "bob": []}
    assert not bare._servers, "the server processes were not stopped"


async def test_bare_ordering_after_reconnect(bare):
    r = await lab.ordering_after_reconnect(bare)
    assert not r.ok
    assert r.data["stayed"] == N
    assert r.data["fan_out"] is True
    assert r.data["missing"] == list(range(21, 31))  # rounds 11-15, while it moved
    assert r.data["late"] == list(range(31, 51, 2))  # p's event of each round, after q's
    assert r.data["repeated"] == []


# --- the control server as it is today (memory log, open mode, resume) -------------------


async def test_control_today_fails_authentication_and_authorization(control):
    auth = await lab.authentication(control)
    assert not auth.ok and auth.data["welcomed_as"] == "owner" and auth.data["acted"]
    authz = await lab.authorization(control)
    assert not authz.ok and authz.data["read"] and authz.data["applied"]


async def test_control_today_loses_history_at_restart(control):
    r = await lab.persistence(control)
    assert not r.ok
    assert r.data == {"before": N, "after": [], "next_seq": 1}
    assert r.summary.endswith("the next message got seq 1 again")


async def test_control_today_recovers_offline_and_dropped_clients(control):
    offline = await lab.offline_delivery(control)
    assert offline.ok, offline
    assert offline.data["received"] == N
    missed = await lab.missed_messages(control)
    assert missed.ok, missed
    assert missed.data["received"] == N and missed.data["seq_jumps"] == []


async def test_control_today_dedupes_a_retry(control):
    r = await lab.duplicates(control)
    assert r.ok, r
    assert r.data["first_acked"] is False
    assert r.data["received"] == list(range(1, 11))
    assert r.data["retry"]["duplicate"] is True and r.data["retry"]["seq"] == 5


async def test_control_today_knows_room_membership(control):
    r = await lab.room_membership(control)
    assert r.ok, r
    assert r.data == {"members": ["alice", "carol"], "after_leave": ["alice"],
                      "leaked_to_bob": []}


async def test_control_today_fails_across_two_servers(control):
    routing = await lab.multi_server(control)
    assert not routing.ok and routing.data["bob"] == []
    ordering = await lab.ordering_after_reconnect(control)
    assert not ordering.ok
    # Resume fills the gap, but with server B's seq, which numbers another order.
    assert ordering.data["missing"] == [] and ordering.data["repeated"] == []
    assert len(ordering.data["late"]) == 15
    assert "each server numbers the room on its own" in ordering.summary


async def test_without_resume_the_gap_is_visible_in_the_seq():
    r = await lab.missed_messages(lab.ControlTarget(resume=False))
    assert not r.ok
    assert r.data["missing"] == list(range(21, 36))
    assert r.data["seq_jumps"] == [(20, 36)]
    assert "the seq jumped from 20 to 36" in r.summary


# --- the control server configured with the repairs of lessons 05-07 ----------------------


async def test_tokens_repair_authentication_and_authorization():
    from wsdemo.auth import JWTAccess, KeyRing

    target = lab.ControlTarget(access=JWTAccess(KeyRing.generate("k1")))
    auth = await lab.authentication(target)
    assert auth.ok, auth
    assert auth.data["refusal"] == 4401 and not auth.data["accepted"]
    authz = await lab.authorization(target)
    assert authz.ok, authz
    assert (authz.data["read_refusal"], authz.data["set_refusal"]) == (4403, 4403)


async def test_sqlite_log_repairs_persistence():
    r = await lab.persistence(lab.ControlTarget(log="sqlite"))
    assert r.ok, r
    assert r.data == {"before": N, "after": N, "next_seq": 51}


class SharedLog(MemoryEventLog):
    """One in-memory log that two servers in this process share (``shared``, ``follow``),
    standing in for Redis: the servers then route each room's events between them."""

    shared = True
    log_name = "shared memory"

    def __init__(self):
        super().__init__()
        self._grown = asyncio.Event()

    async def append(self, *args):
        appended = self.append_now(*args)
        self._grown.set()
        self._grown = asyncio.Event()
        return appended

    async def follow(self, room, after):
        while True:
            grown = self._grown
            for event in await self.read_after(room, after):
                yield event
                after = event.seq
            if self.last_seq_now(room) <= after:
                await grown.wait()

    async def close(self):
        return None  # each server closes its view, not the store


async def test_a_shared_log_repairs_routing_and_ordering():
    def shared_per_run():
        # One store per experiment, shared by both of its servers.
        store = {}
        return lambda index: store.setdefault("log", SharedLog())

    routing = await lab.multi_server(lab.ControlTarget(log=shared_per_run()))
    assert routing.ok, routing
    assert routing.data["bob"] == N
    target = lab.ControlTarget(log=shared_per_run())
    ordering = await lab.ordering_after_reconnect(target)
    assert ordering.ok, ordering
    assert ordering.data["fan_out"] is False
    assert ordering.data["moved"] == N


async def test_a_missing_feature_is_reported_not_faked():
    def not_built(index):
        raise lab.NotAvailable("the Redis event log is not built yet")

    r = await lab.multi_server(lab.ControlTarget(log=not_built))
    assert not r.ok and not r.available
    assert r.verdict == "not available yet"
    assert str(r).startswith("– multi-server routing on control server (custom log, open mode)"
                             ": not available yet — the Redis event log")


# --- results, timelines, the table ---------------------------------------------------------


def test_ranges():
    assert lab.ranges([]) == ""
    assert lab.ranges([3]) == "3"
    assert lab.ranges([5, 3, 4, 9, 11, 12]) == "3–5, 9, 11–12"


def test_timeline_counts_gaps_duplicates_and_late_arrivals():
    t = lab.Timeline(8, {"r": [1, 2, 2, 5, 3, 8]})
    assert t.missing("r") == [4, 6, 7]
    assert t.duplicates("r") == [2]
    assert t.out_of_order("r") == [3]


def test_result_plot_draws_the_timeline():
    import matplotlib.pyplot as plt

    result = lab.Result("x", "t", False, "s", "06",
                        timeline=lab.Timeline(5, {"r": [1, 2, 2, 4]}, [(2, "dropped")]))
    ax = result.plot()
    assert ax.get_title() == "x — t"
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["every message once, in order", "r: 3 of 5", "duplicate", "missing"]
    plt.close(ax.figure)
    with pytest.raises(ValueError):
        lab.Result("x", "t", True, "s", "05").plot()


def test_scoreboard_lists_every_experiment_in_order():
    bare = [lab.Result(e.title, "bare", False, "", e.repaired_in) for e in lab.EXPERIMENTS]
    text = repr(lab.scoreboard({"bare server": bare, "control": bare[:1]}))
    lines = text.splitlines()
    assert lines[0].split() == ["experiment", "bare", "server", "control", "repaired", "in"]
    assert [line.split("  ")[0] for line in lines[2:]] == [e.title for e in lab.EXPERIMENTS]
    assert lines[2].count("✗ fails") == 2 and "✗" not in lines[3].split("fails")[-1]
    assert len(lab.EXPERIMENTS) == 9


# --- the bare server as a process ---------------------------------------------------------


async def _spawn_bare():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsdemo.lab", "bare", "--port", "0", "--stop-on-eof",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert line.startswith(b"bare broadcast server on ws://127.0.0.1:"), line
    return proc


async def test_bare_process_stops_on_sigterm():
    proc = await _spawn_bare()
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_bare_process_stops_when_its_parent_goes():
    proc = await _spawn_bare()
    proc.stdin.close()  # what the OS does when the parent dies
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_bare_server_rebroadcasts_to_everyone_including_the_sender():
    import tornado.websocket

    server = lab.BareBroadcastServer().start()
    try:
        a = await tornado.websocket.websocket_connect(server.ws_url)
        b = await tornado.websocket.websocket_connect(server.ws_url)
        await a.write_message("not even JSON")
        assert await asyncio.wait_for(a.read_message(), 5) == "not even JSON"
        assert await asyncio.wait_for(b.read_message(), 5) == "not even JSON"
        a.close()
        b.close()
    finally:
        await server.stop()
    assert not server.running and server.broadcasts == 1


# --- lesson 07's configuration: two servers on a real Redis -------------------------------


@pytest.fixture
async def redis_url(redis_server_path, tmp_path):
    """A throwaway redis-server on a Unix socket (no port to race for), stopped at the end."""
    sock = tmp_path / "redis.sock"
    proc = await asyncio.create_subprocess_exec(
        redis_server_path, "--port", "0", "--unixsocket", str(sock), "--save", "",
        "--appendonly", "no", "--dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)

    async def ready() -> None:
        while line := await proc.stdout.readline():
            if b"ready to accept connections" in line.lower():
                return
        raise RuntimeError("redis-server exited before it was ready")

    try:
        await asyncio.wait_for(ready(), 10)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.redis
async def test_redis_log_repairs_routing_ordering_and_persistence(redis_url):
    pytest.importorskip("redis")
    target = lab.ControlTarget(log=redis_url)
    assert target.name == "control server (redis log, open mode)"
    for experiment in (lab.multi_server, lab.ordering_after_reconnect, lab.persistence):
        result = await experiment(target)
        assert result.ok, result
    assert result.data["next_seq"] == 51  # each run starts on fresh keys: seq from 1
