"""The failure lab: nine things WebSocket does not give you, each an experiment.

WebSocket gives two programs a live channel for messages and nothing more. Each
experiment here sets up a situation that real clients meet — an intruder, a
restart, a dropped connection, a retry, a second server — and *measures* what
a client then receives. Against the bare Tornado broadcast
(:class:`~wsdemo.lab.targets.BareTarget`) every one of them fails; later
lessons re-run the same function against the repaired server and show it
passing::

    from wsdemo import lab
    result = await lab.missed_messages(lab.BareTarget())
    result          # ✗ missed-message recovery on bare Tornado broadcast: received 35 of 50, ...
    result.ok       # False
    result.plot()   # sent vs received, the gap shaded

=========================  =========================================  ==========
experiment                 the failure it looks for                   repaired in
=========================  =========================================  ==========
authentication             anyone can connect and act                 05
authorization              any user can join any room, set anything   05
persistence                restart the server: history gone           06
offline delivery           a client that was away never gets it       06
missed-message recovery    a dropped connection leaves a gap          06
duplicate handling         a retry after a lost ack acts twice        06
room membership            no notion of who is in which room          07
multi-server routing       a message stays on the server it came to   07
ordering after reconnect   reconnect elsewhere, see another order     06, 07
=========================  =========================================  ==========

Nothing depends on timing luck: connections are dropped at fixed message
numbers, counts are fixed, every step waits for its confirmation (an ack, or
the sender's own echo from the bare server), and "nothing more is coming" is
known by waiting for an end marker sent after everything else — never by
sleeping. Every wait is bounded (the target's ``timeout``). Each experiment
starts fresh servers and stops them, and the connections it opened, at the end.

What a target must offer is in :mod:`wsdemo.lab.targets`.

Why one file of this length: nine experiments of one shape (set up, measure,
report), a function each.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .bare import BareBroadcastServer
from .targets import (
    LAB_ROOMS,
    BareTarget,
    ConnectionLost,
    ControlTarget,
    Delivery,
    Link,
    LossyProxy,
    NotAvailable,
    Refused,
    Target,
)

__all__ = [
    "EXPERIMENTS",
    "LAB_ROOMS",
    "BareBroadcastServer",
    "BareTarget",
    "ConnectionLost",
    "ControlTarget",
    "Delivery",
    "Experiment",
    "Link",
    "LossyProxy",
    "NotAvailable",
    "Refused",
    "Result",
    "Scoreboard",
    "Target",
    "Timeline",
    "authentication",
    "authorization",
    "duplicates",
    "main",
    "missed_messages",
    "multi_server",
    "offline_delivery",
    "ordering_after_reconnect",
    "persistence",
    "ranges",
    "room_membership",
    "run_all",
    "scoreboard",
]


# --- results ---------------------------------------------------------------------


def ranges(numbers: list[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"3–5, 9"``."""
    out: list[str] = []
    values = sorted(set(numbers))
    start = prev = None
    for n in [*values, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(f"{start}" if start == prev else f"{start}–{prev}")
        start = prev = n
    return ", ".join(out)


_SERIES_COLOURS = ("tab:blue", "tab:green", "tab:purple", "tab:brown")


@dataclass
class Timeline:
    """What one or more clients received, by the number each message was sent with.

    ``series`` maps a client to the numbers it received, in arrival order (a
    repeat is a duplicate); messages were sent as 1..``total``. ``marks`` are
    (number of messages received, what happened then) — a drop, a restart.
    """

    total: int
    series: dict[str, list[int]]
    marks: list[tuple[int, str]] = field(default_factory=list)

    def missing(self, name: str) -> list[int]:
        got = set(self.series[name])
        return [n for n in range(1, self.total + 1) if n not in got]

    def duplicates(self, name: str) -> list[int]:
        nums = self.series[name]
        return sorted({n for n in nums if nums.count(n) > 1})

    def out_of_order(self, name: str) -> list[int]:
        """Numbers that arrived after a higher number had already arrived (repeats aside)."""
        late, seen, highest = [], set(), 0
        for n in self.series[name]:
            if n in seen:
                continue
            seen.add(n)
            if n < highest:
                late.append(n)
            highest = max(highest, n)
        return late

    def plot(self, ax: Any = None, title: str | None = None) -> Any:
        """Draw it: received (x: order of arrival) against sent (y: number). Returns the Axes.

        The dashed diagonal is "every message once, in order". A gap shows as a
        jump (its numbers shaded), a duplicate as an orange cross, a message
        that arrived after a later one as a red dot.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.2))
        total = self.total
        longest = max([len(s) for s in self.series.values()] + [total])
        ax.plot([1, total], [1, total], ls="--", lw=1, color="0.65",
                label="every message once, in order")
        labelled: set[str] = set()

        def once(label: str) -> str:
            if label in labelled:
                return "_nolegend_"
            labelled.add(label)
            return label

        for k, (name, nums) in enumerate(self.series.items()):
            colour = _SERIES_COLOURS[k % len(_SERIES_COLOURS)]  # orange and red mean trouble
            seen: set[int] = set()
            highest = 0
            normal, repeated, late = [], [], []
            for x, n in enumerate(nums, start=1):
                if n in seen:
                    repeated.append((x, n))
                elif n < highest:
                    late.append((x, n))
                else:
                    normal.append((x, n))
                seen.add(n)
                highest = max(highest, n)
            got = len(seen)
            ax.scatter([x for x, _ in normal], [n for _, n in normal], s=12, color=colour,
                       label=f"{name}: {got} of {total}", zorder=3)
            if late:
                ax.scatter([x for x, _ in late], [n for _, n in late], s=22, color="tab:red",
                           label=once("arrived after a later one"), zorder=4)
            if repeated:
                ax.scatter([x for x, _ in repeated], [n for _, n in repeated], s=60,
                           marker="x", color="tab:orange", linewidths=2,
                           label=once("duplicate"), zorder=5)
            if not nums:
                # A band over everything would hide the other series: say it instead.
                ax.text(0.02, 0.92 - 0.08 * k, f"{name}: nothing received", color=colour,
                        transform=ax.transAxes, va="top", fontsize=9)
                continue
            for text in ranges(self.missing(name)).split(", "):
                if not text:
                    continue
                lo, _, hi = text.partition("–")
                ax.axhspan(int(lo) - 0.5, int(hi or lo) + 0.5, color=colour, alpha=0.12,
                           label=once(f"missing ({name})") if k else once("missing"))
        for x, text in self.marks:
            ax.axvline(x + 0.5, ls=":", lw=1.2, color="0.3")
            ax.text(x + 0.8, total * 0.97, text, va="top", fontsize=8, color="0.2")
        ax.set_xlim(0, longest + 1)
        ax.set_ylim(0, total + 1)
        ax.set_xlabel("order received")
        ax.set_ylabel("message number (order sent)")
        if title:
            ax.set_title(title, fontsize=10)
        ax.legend(loc="lower right", fontsize=7)
        return ax


@dataclass(repr=False)
class Result:
    """What one experiment observed against one target.

    ``ok`` is True when the guarantee held; ``summary`` says what was seen in
    one line; ``data`` holds the raw numbers; ``timeline`` (if any) is plotted
    by :meth:`plot`. ``available`` is False when the target lacks what the
    experiment needs (then ``ok`` is False and ``summary`` says what is missing).
    """

    experiment: str
    target: str
    ok: bool
    summary: str
    repaired_in: str
    available: bool = True
    timeline: Timeline | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if not self.available:
            return "not available yet"
        return "passes" if self.ok else "fails"

    @property
    def mark(self) -> str:
        return "–" if not self.available else ("✓" if self.ok else "✗")

    def __str__(self) -> str:
        return f"{self.mark} {self.experiment} on {self.target}: {self.summary}"

    __repr__ = __str__

    def plot(self, ax: Any = None) -> Any:
        """The timeline, titled with the experiment and target; returns the Axes."""
        if self.timeline is None:
            raise ValueError(f"{self.experiment} has no timeline to plot")
        return self.timeline.plot(ax, title=f"{self.experiment} — {self.target}")


@dataclass
class _Outcome:
    ok: bool
    summary: str
    timeline: Timeline | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """One entry of :data:`EXPERIMENTS`: the name, the lesson that repairs it, the function."""

    key: str
    title: str
    repaired_in: str
    run: Callable[..., Awaitable[Result]]


#: Every experiment, in the order of the lesson.
EXPERIMENTS: list[Experiment] = []


def _experiment(title: str, repaired_in: str) -> Callable:
    def register(body: Callable[..., Awaitable[_Outcome]]) -> Callable[..., Awaitable[Result]]:
        @functools.wraps(body)
        async def run(target: Target, **options: Any) -> Result:
            try:
                outcome = await body(target, **options)
            except NotAvailable as missing:
                return Result(title, target.name, False, f"not available yet — {missing}",
                              repaired_in, available=False)
            return Result(title, target.name, outcome.ok, outcome.summary, repaired_in,
                          timeline=outcome.timeline, data=outcome.data)

        # What help() and editors show: the body's parameters, returning a Result.
        run.__signature__ = inspect.signature(body).replace(  # type: ignore[attr-defined]
            return_annotation="Result")
        run.__annotations__ = {**body.__annotations__, "return": "Result"}
        EXPERIMENTS.append(Experiment(body.__name__, title, repaired_in, run))
        return run

    return register


def _grant(target: Target, user: str, grants: dict[str, list[str]]) -> str | None:
    return target.credentials(user, grants)


async def _joined(target: Target, name: str, rooms: list[str], *, server: int = 0,
                  actions: tuple[str, ...] = ("read", "publish"), lossy: bool = False) -> Link:
    """A client with the rights it needs (where the target has rights), in ``rooms``."""
    token = _grant(target, name, {room: list(actions) for room in rooms})
    link = await target.connect(name, server=server, credentials=token, lossy=lossy)
    for room in rooms:
        await link.join(room)
    return link


async def _publish_numbered(link: Link, first: int, last: int, room: str = "lab",
                            prefix: str = "m") -> None:
    for n in range(first, last + 1):
        await link.publish(room, f"{prefix}{n}", {"n": n})


async def _end_marker(target: Target, readers: list[Link], room: str = "lab", *,
                      server: int = 0, name: str = "end") -> None:
    """Send a marker after everything else and wait until every reader has it: whatever
    the server was going to deliver before it has been delivered by then."""
    await target.server_publish(room, name, {"end": True}, server=server)
    for reader in readers:
        await reader.wait_for_id(name)


def _took(verb: str, count: int, total: int) -> str:
    return f"{verb} {count} of {total}"


# --- 1. authentication -----------------------------------------------------------------


@_experiment("authentication", "05")
async def authentication(target: Target) -> _Outcome:
    """A client with no credentials, claiming to be ``owner``, tries to publish in ``lab``.

    Passes if nothing it sends reaches the room.
    """
    async with target.running():
        owner = await _joined(target, "owner", ["lab"])
        accepted = joined = False
        refusal: Any = None
        claimed_as = None
        try:
            intruder = await target.connect("owner")  # no credentials, someone else's name
            accepted = True
            claimed_as = getattr(intruder, "user", None)
            await intruder.join("lab")
            joined = True
            await intruder.publish("lab", "intruder-1", {"n": 1, "text": "open the door"})
        except Refused as exc:
            refusal = exc.code
        except ConnectionLost:
            refusal = "closed"
        await _end_marker(target, [owner])
        acted = any(d.id == "intruder-1" for d in owner.deliveries)
    data = {"accepted": accepted, "joined": joined, "acted": acted, "refusal": refusal,
            "welcomed_as": claimed_as}
    if acted and claimed_as is not None:
        summary = (f"a client with no credentials was welcomed as user {claimed_as!r} "
                   "and its message reached the room")
    elif acted:
        summary = ("a client with no credentials, calling itself 'owner', connected and its "
                   "message reached the room — the server cannot tell anyone apart")
    elif not accepted:
        summary = f"a client with no credentials was refused ({refusal}); nothing reached the room"
    else:
        summary = ("a client with no credentials could connect but not act "
                   f"({refusal}); nothing reached the room")
    return _Outcome(not acted, summary, data=data)


# --- 2. authorization --------------------------------------------------------------------


@_experiment("authorization", "05")
async def authorization(target: Target) -> _Outcome:
    """``guest`` may read ``lobby`` only; it tries to read ``ops`` and to set ``speed`` there.

    Passes if it can do neither while the operator keeps working.
    """
    async with target.running():
        operator = await _joined(target, "operator", ["ops"],
                                 actions=("read", "publish", "set"))
        guest_token = _grant(target, "guest", {"lobby": ["read"]})

        # Attempt 1: read ops. (A refusal may close the connection, so each
        # attempt gets a connection of its own.)
        reader = await target.connect("guest", credentials=guest_token)
        await reader.join("lobby")
        read = False
        read_refusal: Any = None
        try:
            await reader.join("ops")
        except (Refused, ConnectionLost) as exc:
            read_refusal = getattr(exc, "code", "closed")
        await target.server_publish("ops", "ops-secret", {"text": "door code 4711"})
        await operator.wait_for_id("ops-secret")
        if read_refusal is None:
            await reader.wait_for_id("ops-secret")  # it joined: the message comes
        read = any(d.id == "ops-secret" for d in reader.deliveries)

        # Attempt 2: set a control in ops.
        setter = await target.connect("guest", credentials=guest_token)
        set_refusal: Any = None
        try:
            await setter.join("ops")
            await setter.set("ops", "speed", 10, id="guest-set")
        except (Refused, ConnectionLost) as exc:
            set_refusal = getattr(exc, "code", "closed")
        await _end_marker(target, [operator], "ops")
        applied = any(d.id == "guest-set" for d in operator.deliveries)
    data = {"read": read, "applied": applied, "read_refusal": read_refusal,
            "set_refusal": set_refusal}
    if read or applied:
        did = [x for x, done in (("read the messages of 'ops'", read),
                                 ("set speed to 10 there", applied)) if done]
        summary = "guest, allowed to read 'lobby' only, " + " and ".join(did)
        if not target.has_seq:
            summary += " — the bare server has no rooms and no permissions"
    else:
        summary = (f"guest was refused in 'ops' (read: {read_refusal}, set: {set_refusal}); "
                   "speed unchanged")
    return _Outcome(not (read or applied), summary, data=data)


# --- 3. persistence ---------------------------------------------------------------------


@_experiment("message persistence", "06")
async def persistence(target: Target, *, messages: int = 50) -> _Outcome:
    """Publish ``messages``, ask for the room's history, restart the server, ask again.

    Passes if the history still holds every message after the restart.
    """
    async with target.running():
        writer = await _joined(target, "writer", ["lab"])
        await _publish_numbered(writer, 1, messages)
        before = [d.n for d in await target.history("lab") if d.n is not None]
        await target.restart()
        after = [d.n for d in await target.history("lab") if d.n is not None]
        # One more message after the restart: which seq does the room give it?
        writer = await writer.reconnect()
        ack = await writer.publish("lab", f"m{messages + 1}", {"n": messages + 1})
        next_seq = ack.get("seq")
    data = {"before": before, "after": after, "next_seq": next_seq}
    ok = sorted(set(after)) == list(range(1, messages + 1))
    summary = (f"a newcomer could read {len(set(before))} of {messages} earlier messages "
               f"before the restart and {len(set(after))} after")
    if not target.has_seq:
        summary += ": the bare server keeps nothing"
    elif next_seq is not None and next_seq <= messages:
        summary += f"; the next message got seq {next_seq} again"
    timeline = Timeline(messages, {"readable before restart": before,
                                   "readable after restart": after})
    return _Outcome(ok, summary, timeline, data)


# --- 4. offline delivery -------------------------------------------------------------------


@_experiment("offline delivery", "06")
async def offline_delivery(target: Target, *, messages: int = 50, away_after: int = 10
                           ) -> _Outcome:
    """The reader goes offline (a clean close) after ``away_after``; the rest is sent
    while it is away; it comes back.

    Passes if it ends up with every message, once, in order.
    """
    async with target.running():
        writer = await _joined(target, "writer", ["lab"])
        reader = await _joined(target, "reader", ["lab"])
        await _publish_numbered(writer, 1, away_after)
        await reader.wait_until(lambda: away_after in reader.numbers(), f"message {away_after}")
        await reader.close()
        await _publish_numbered(writer, away_after + 1, messages)
        reader = await reader.reconnect()
        await _end_marker(target, [reader])
        got = reader.numbers("lab")
    away = list(range(away_after + 1, messages + 1))
    caught_up = [n for n in away if n in got]
    ok = got == list(range(1, messages + 1))
    summary = (f"the reader was away for messages {ranges(away)} and, back online, got "
               f"{len(caught_up)} of those {len(away)}")
    if ok:
        summary += ", in order"
    timeline = Timeline(messages, {"reader": got}, [(away_after, "offline, then back")])
    return _Outcome(ok, summary, timeline, {"received": got, "away": away})


# --- 5. missed-message recovery ------------------------------------------------------------


def _seq_jumps(deliveries: list[Delivery]) -> list[tuple[int, int]]:
    seqs = [d.seq for d in deliveries if d.seq is not None]
    return [(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b != a + 1]


@_experiment("missed-message recovery", "06")
async def missed_messages(target: Target, *, messages: int = 50, drop_after: int = 20,
                          back_after: int = 35) -> _Outcome:
    """The reader's connection drops (no close handshake) after message ``drop_after``;
    ``drop_after+1 .. back_after`` are sent while it is cut off; it reconnects.

    Passes if it ends up with every message, once, in order.
    """
    async with target.running():
        writer = await _joined(target, "writer", ["lab"])
        reader = await _joined(target, "reader", ["lab"])
        await _publish_numbered(writer, 1, drop_after)
        await reader.wait_until(lambda: drop_after in reader.numbers(), f"message {drop_after}")
        reader.abort()
        await _publish_numbered(writer, drop_after + 1, back_after)
        reader = await reader.reconnect()
        await _publish_numbered(writer, back_after + 1, messages)
        await reader.wait_until(lambda: messages in reader.numbers(), f"message {messages}")
        got = reader.numbers("lab")
        jumps = _seq_jumps([d for d in reader.seen if d.room == "lab"])
    missing = [n for n in range(1, messages + 1) if n not in got]
    ok = got == list(range(1, messages + 1))
    if ok:
        summary = (f"received all {messages} in order: the {back_after - drop_after} sent while "
                   f"it was cut off ({ranges(list(range(drop_after + 1, back_after + 1)))}) "
                   "were replayed")
    else:
        summary = f"received {len(set(got))} of {messages}, gap at {ranges(missing)}"
        if not target.has_seq:
            summary += " — and nothing told the client: there is no seq to notice the jump"
        elif jumps:
            a, b = jumps[0]
            summary += f" — the seq jumped from {a} to {b}, so the client can tell"
    timeline = Timeline(messages, {"reader": got}, [(drop_after, "dropped, reconnected")])
    return _Outcome(ok, summary, timeline, {"received": got, "missing": missing,
                                            "seq_jumps": jumps})


# --- 6. duplicate handling -------------------------------------------------------------


@_experiment("duplicate handling", "06")
async def duplicates(target: Target, *, messages: int = 10, lost_at: int = 5) -> _Outcome:
    """The sender publishes ``messages``; the ack of message ``lost_at`` is lost (a proxy
    swallows the server's replies, then the connection drops) and the sender, having no
    ack, sends it again with the same id on a new connection.

    Passes if the room gets that message once.
    """
    async with target.running():
        observer = await _joined(target, "observer", ["lab"])
        sender = await _joined(target, "sender", ["lab"], lossy=True)
        await _publish_numbered(sender, 1, lost_at - 1)
        sender.lose_replies()
        first_try = asyncio.ensure_future(
            sender.publish("lab", f"m{lost_at}", {"n": lost_at}))
        await observer.wait_for_id(f"m{lost_at}")  # the server has acted on it ...
        sender.cut()  # ... and the connection dies before the sender hears so
        acked = True
        try:
            await asyncio.wait_for(first_try, target.timeout)
        except (ConnectionLost, Refused):
            acked = False
        sender = await sender.reconnect()
        retry = await sender.publish("lab", f"m{lost_at}", {"n": lost_at})  # same id
        await _publish_numbered(sender, lost_at + 1, messages)
        await observer.wait_until(lambda: messages in observer.numbers(), f"message {messages}")
        got = observer.numbers("lab")
    times = got.count(lost_at)
    ok = got == list(range(1, messages + 1))
    lost = "lost" if not acked else "not lost (the experiment did not work)"
    summary = f"the ack of message {lost_at} was {lost}, the sender retried: the room got it "
    summary += {1: "once", 2: "twice"}.get(times, f"{times} times")
    if retry.get("duplicate"):
        summary += f" (the retry was acked duplicate: true, seq {retry.get('seq')})"
    timeline = Timeline(messages, {"observer": got}, [(lost_at, "ack lost, retried")])
    return _Outcome(ok, summary, timeline, {"received": got, "times": times,
                                            "first_acked": acked, "retry": retry})


# --- 7. room membership ----------------------------------------------------------------


@_experiment("room membership", "07")
async def room_membership(target: Target) -> _Outcome:
    """alice and carol join ``kitchen``, bob joins ``garage``. Who is in the kitchen?
    Does a kitchen message reach bob? Who is left when carol leaves?

    Passes if the server knows the members (and their change), and keeps rooms apart.
    """
    async with target.running():
        alice = await _joined(target, "alice", ["kitchen"])
        carol = await _joined(target, "carol", ["kitchen"])
        bob = await _joined(target, "bob", ["garage"])
        # Presence sent when carol joined reaches alice before this marker.
        await _end_marker(target, [alice], "kitchen", name="kitchen-mark")
        members = alice.members("kitchen")
        await alice.publish("kitchen", "k1", {"n": 1, "text": "dinner is ready"})
        await _end_marker(target, [bob], "garage", name="garage-mark")
        leaked = sorted({d.id for d in bob.deliveries if d.room == "kitchen"})
        # An explicit leave: a connection that merely closes may be kept in the room for a
        # short grace period, so that a quick reconnect does not flicker out and back in.
        await carol.leave("kitchen")
        await carol.close()
        after = None
        if target.has_presence:
            try:
                await alice.wait_until(lambda: "carol" not in (alice.members("kitchen") or []),
                                       "presence without carol")
            except TimeoutError:
                pass  # reported below: the list still names carol
            after = alice.members("kitchen")
    data = {"members": members, "after_leave": after, "leaked_to_bob": leaked}
    ok = (members is not None and sorted(members) == ["alice", "carol"]
          and after == ["alice"] and not leaked)
    if members is None:
        summary = "the server cannot say who is in 'kitchen' (no presence at all)"
    else:
        summary = (f"presence said kitchen = {', '.join(sorted(members))}, then "
                   f"{', '.join(after or []) or 'nobody'} after carol left")
    summary += (f"; bob, in 'garage', received {len(leaked)} kitchen message(s)" if leaked
                else "; bob, in 'garage', got nothing from 'kitchen'")
    return _Outcome(ok, summary, data=data)


# --- 8. multi-server routing -----------------------------------------------------------


@_experiment("multi-server routing", "07")
async def multi_server(target: Target, *, messages: int = 50) -> _Outcome:
    """Two servers; alice on server A publishes ``messages``; bob on server B listens.

    Passes if bob receives every message, in order.
    """
    async with target.running(servers=2):
        alice = await _joined(target, "alice", ["lab"], server=0)
        bob = await _joined(target, "bob", ["lab"], server=1)
        await _publish_numbered(alice, 1, messages)
        # The end marker enters the room on bob's own server, after alice's last
        # message: if alice's messages were routed to B, they come before it.
        await _end_marker(target, [bob], server=1)
        await alice.wait_until(lambda: messages in alice.numbers(), f"message {messages}")
        got_a = alice.numbers("lab")
        got_b = bob.numbers("lab")
    ok = got_b == list(range(1, messages + 1))
    summary = (f"bob, on server B, received {len(set(got_b))} of the {messages} messages "
               "alice published on server A")
    if ok:
        summary += ", in order"
    timeline = Timeline(messages, {"alice (server A)": got_a, "bob (server B)": got_b})
    return _Outcome(ok, summary, timeline, {"alice": got_a, "bob": got_b})


# --- 9. ordering after reconnect ----------------------------------------------------------


@_experiment("ordering after reconnect", "06, 07")
async def ordering_after_reconnect(target: Target, *, rounds: int = 25, drop_round: int = 10,
                                   back_round: int = 15) -> _Outcome:
    """Two servers and two publishers: p (on A) and q (on B) take turns, one event
    each per round, so event 2i-1 is p's and 2i is q's. Where the servers do not route
    between themselves, each publisher also sends to the other server itself (the
    only way a bare server gets the other's events). A client that stayed on A
    shows the room's order. A client moves from A to B: its connection drops after
    ``drop_round`` rounds and it reconnects to B after ``back_round``.

    Passes if the client that moved sees exactly what the one that stayed sees.
    """
    async with target.running(servers=2):
        fan_out = not target.shares_rooms
        p = {0: await _joined(target, "p", ["lab"], server=0)}
        q = {1: await _joined(target, "q", ["lab"], server=1)}
        if fan_out:
            p[1] = await _joined(target, "p", ["lab"], server=1)
            q[0] = await _joined(target, "q", ["lab"], server=0)
        stayer = await _joined(target, "stayer", ["lab"], server=0)
        mover = await _joined(target, "mover", ["lab"], server=0)

        async def play(first: int, last: int) -> None:
            for i in range(first, last + 1):
                # Each step waits for its confirmation, so server A takes p's event
                # of a round first, and (fanning out) server B takes q's first.
                await p[0].publish("lab", f"p{i}", {"n": 2 * i - 1})
                await q[1].publish("lab", f"q{i}", {"n": 2 * i})
                if fan_out:
                    await p[1].publish("lab", f"p{i}", {"n": 2 * i - 1})
                    await q[0].publish("lab", f"q{i}", {"n": 2 * i})

        await play(1, drop_round)
        await mover.wait_until(lambda: 2 * drop_round in mover.numbers(), "the first rounds")
        mover.abort()
        await play(drop_round + 1, back_round)
        mover = await mover.reconnect(server=1)
        await play(back_round + 1, rounds)
        last = {2 * rounds - 1, 2 * rounds}
        for reader in (stayer, mover):
            await reader.wait_until(lambda r=reader: last <= set(r.numbers()), "the last round")
        stayed = stayer.numbers("lab")
        moved = mover.numbers("lab")
    total = 2 * rounds
    timeline = Timeline(total, {"stayed on A": stayed, "moved to B": moved},
                        [(2 * drop_round, "moved to B")])
    late = timeline.out_of_order("moved to B")
    missing = timeline.missing("moved to B")
    repeated = timeline.duplicates("moved to B")
    ok = moved == stayed == list(range(1, total + 1))
    if ok:
        summary = f"the client that moved from A to B saw all {total} events in the same order"
    else:
        summary = (f"the client that moved from A to B got {len(late)} events out of order")
        if missing:
            summary += f" and missed {ranges(missing)}"
        if repeated:
            summary += f" and got {ranges(repeated)} twice"
        if late and target.has_seq and not target.shares_rooms:
            summary += " — each server numbers the room on its own"
    return _Outcome(ok, summary, timeline, {"stayed": stayed, "moved": moved, "late": late,
                                            "missing": missing, "repeated": repeated,
                                            "fan_out": fan_out})


# --- all of them ----------------------------------------------------------------------


async def run_all(target: Target) -> list[Result]:
    """Every experiment against ``target``, in the lesson's order."""
    return [await experiment.run(target) for experiment in EXPERIMENTS]


class Scoreboard:
    """A table: one row per experiment, one column per target (``✓ passes``, ``✗ fails``)."""

    def __init__(self, columns: dict[str, list[Result]]):
        self.columns = columns

    def rows(self) -> list[list[str]]:
        rows = []
        for experiment in EXPERIMENTS:
            row = [experiment.title]
            for results in self.columns.values():
                found = next((r for r in results if r.experiment == experiment.title), None)
                row.append("" if found is None else f"{found.mark} {found.verdict}")
            row.append(experiment.repaired_in)
            rows.append(row)
        return rows

    def __repr__(self) -> str:
        header = ["experiment", *self.columns, "repaired in"]
        rows = [header, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def scoreboard(columns: dict[str, list[Result]]) -> Scoreboard:
    """``scoreboard({"bare server": results, "control server": results})``."""
    return Scoreboard(columns)


# --- command line ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m wsdemo.lab bare --port N`` (a bare server) or ``... run`` (the lab)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bare"]:
        from .bare import main as bare_main

        return bare_main(argv)
    parser = argparse.ArgumentParser(
        prog="python -m wsdemo.lab",
        description="The failure lab: 'bare' runs a bare broadcast server (see "
        "'bare --help'); 'run' runs every experiment and prints the scoreboard.")
    parser.add_argument("command", choices=["bare", "run"])
    parser.parse_args(argv)

    async def run() -> None:
        columns = {"bare server": await run_all(BareTarget()),
                   "control server": await run_all(ControlTarget())}
        for results in columns.values():
            for result in results:
                print(result)
        print()
        print(scoreboard(columns))

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
