"""``python -m wsdemo bench``: the control server measured against baselines, in one run.

What it measures (``--only NAME`` picks some; every one against baselines
measured in the same run, printed as ratios):

``ceiling``      the load generator against a raw asyncio server: how fast it
                 can go, and that it is faster than every server it measures
                 (always run first; its numbers are the ceiling column)
``latency``      ``set`` → widget → ``event`` round trip (p50, p99) vs a bare
                 Tornado and a ``websockets`` echo
``fanout``       broadcast deliveries/s at 1, 100 and 1,000 clients vs bare
                 Tornado and ``websockets.broadcast()``
``connections``  connections held and server memory per connection at 1,000 and
                 10,000 idle connections
``publish``      publish → ack throughput with the memory and the SQLite log
``catchup``      events/s replayed to a client that missed 100,000
``deflate``      permessage-deflate off and on, for wsdemo and bare Tornado: bytes
                 on the wire, server CPU and deliveries/s of a broadcast, and
                 memory per connection
``redis``        fan-out with one and two servers on Redis (when the Redis log
                 and ``redis-server`` exist)

How: every server runs in its own process, pinned to CPU 0; the load generator
(:mod:`wsdemo.bench.load`: raw asyncio, frames pre-encoded with
:mod:`wsdemo.wire`) runs in another, pinned to CPU 1; this process only starts
them, hands out jobs and reads /proc. On loopback the absolute numbers say
more about the machine than about the servers: read the ratios.

``main(argv)`` is the command line; :func:`run` returns the results as a dict
(what ``--json`` writes and the lesson plots).

Why one file of this length: the scenarios, the table and the goals share the Bench
and Row records; the scenarios are the part to move into a folder of their own next.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..core.protocol import SUBPROTOCOL
from .load import encode_text

__all__ = ["SCENARIOS", "Settings", "format_table", "main", "percentile", "run"]

SCENARIOS = ("ceiling", "latency", "fanout", "connections", "publish", "catchup", "deflate",
             "redis")
BASELINES = ("tornado", "websockets")
SERVER_CPU, GENERATOR_CPU = 0, 1

# The messages, the same bytes for every server. {n}: a 7-digit message number
# (ids must be distinct: the control server answers a repeated id as a duplicate).
PUBLISH = '{"type":"publish","room":"bench","id":"p{n}","data":"xxxxxxxxxxxxxxxx"}'
SET = '{"type":"set","room":"controls","id":"s{n}","target":"speed","value":{v}}'
HELLO = '{"type":"hello","client":"bench"}'
RESUME = '{"type":"hello","client":"bench","resume":{"history":0}}'
EVENT, ACK, RECOVERED = '"type":"event"', '"type":"ack"', '"type":"recovered"'


@dataclass
class Settings:
    """How much to measure. ``Settings.quick_settings()`` is the short version (lesson, tests)."""

    quick: bool = False
    only: tuple[str, ...] = ()
    clients: tuple[int, ...] = (1, 100, 1000)
    idle: tuple[int, ...] = (1000, 10_000)
    round_trips: int = 2000
    latency_seconds: float = 8.0  # at most, per server: a slow round trip ends it sooner
    seconds: float = 1.0  # each throughput measurement, after a short warm-up
    missed: int = 100_000
    window: int = 16  # fan-out: messages in flight per subscriber
    echo_window: int = 16  # echo and publish: requests in flight (DESIGN §8 used 64)
    settle_limit: float = 45.0  # fan-out: longest wait for the joins' messages to end
    deflate_clients: int = 1000  # deflate: members of the broadcast measured
    deflate_idle: int = 2000  # deflate: connections held for their memory
    progress: bool = True

    @classmethod
    def quick_settings(cls, **changes: Any) -> Settings:
        # 300 clients, not 1,000: joining 1,000 clients to one room takes the control
        # server tens of seconds (presence to every member on every join).
        settings = cls(quick=True, clients=(1, 100, 300), idle=(1000,), round_trips=500,
                       latency_seconds=3.0, seconds=0.5, missed=10_000, settle_limit=20.0,
                       deflate_clients=100, deflate_idle=500)
        for key, value in changes.items():
            setattr(settings, key, value)
        return settings

    def wants(self, scenario: str) -> bool:
        return scenario == "ceiling" or not self.only or scenario in self.only

    @property
    def pool(self) -> int:
        """Distinct publish frames to build: enough for the fastest server's run."""
        return int(min(120_000, 25_000 * (self.seconds + 1)))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks.

    The same definition as numpy's default: p50 of 1..100 is 50.5, p99 is 99.01.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- the child processes ---------------------------------------------------------------------

class ChildFailed(RuntimeError):
    """A server or the generator died, timed out or reported an error."""


_live: set[Child] = set()  # every child process not yet stopped (tests check it empties)


class Child:
    """A child process that talks JSON lines on stdout and dies when its stdin closes."""

    def __init__(self, name: str, argv: list[str]):
        self.name = name
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, cwd=Path(__file__).resolve().parents[2])
        _live.add(self)
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_message(self, timeout: float) -> dict[str, Any]:
        """The next JSON line, waiting at most ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFailed(f"{self.name}: no answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise ChildFailed(f"{self.name} exited: {self.last_error()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def last_error(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines()
                 if line.strip()]
        return lines[-1] if lines else f"exit status {self.proc.poll()}"

    def stop(self) -> None:
        """Close stdin (the child stops itself), then terminate, then kill: bounded."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        for ask in (None, self.proc.terminate, self.proc.kill):
            if ask is not None:
                try:
                    ask()
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(3)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        _live.discard(self)


class Server(Child):
    """A server under test (:mod:`wsdemo.bench.servers`), pinned to the server CPU."""

    def __init__(self, kind: str, *options: str, cpu: int | None, label: str | None = None):
        argv = ["-m", "wsdemo.bench.servers", kind, *options]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        super().__init__(label or kind, argv)
        try:
            ready = self.read_message(60)
        except ChildFailed:
            self.stop()
            raise
        self.port = int(ready["ready"])

    def rss_kib(self) -> int:
        """Resident memory now, from /proc (what the kernel charges the process)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise ChildFailed(f"{self.name}: no VmRSS")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


class Generator(Child):
    """The load generator process; :meth:`run` hands it one job and waits for the result."""

    def __init__(self, cpu: int | None):
        argv = ["-m", "wsdemo.bench.load"] + (["--cpu", str(cpu)] if cpu is not None else [])
        super().__init__("load generator", argv)
        self.nofile = int(self.read_message(30)["nofile"])
        self._jobs = 0

    def run(self, job: dict[str, Any], timeout: float,
            on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        self._jobs += 1
        job = {**job, "id": self._jobs}
        self.send(job)
        deadline = time.monotonic() + timeout
        while True:
            message = self.read_message(max(0.1, deadline - time.monotonic()))
            if message.get("id") != job["id"]:
                continue
            if "progress" in message:
                done, total = message["progress"]
                if on_progress is not None and total:
                    on_progress(min(1.0, done / total))
            elif "error" in message:
                raise ChildFailed(f"{job['op']}: {message['error']}")
            else:
                return message["result"]


def stop_all() -> None:
    """Stop every child still running (called at the end of every run, even a failed one)."""
    for child in list(_live):
        child.stop()


# --- progress -------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr (no dependency): scenario, step, fraction, time."""

    WIDTH = 24

    def __init__(self, enabled: bool, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        # Drawn only on a terminal: elsewhere (a notebook, a log file, CI) every redraw
        # would be one more line of output.
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled and callable(isatty) and bool(isatty())
        self.name = ""
        self.steps = 1
        self.step_index = 0
        self.label = ""
        self.fraction = 0.0
        self.started = time.monotonic()
        self._drawn = 0.0

    def begin(self, name: str, steps: int) -> None:
        self.name, self.steps, self.step_index = name, max(1, steps), -1
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        self.step_index += 1
        self.label, self.fraction = label, 0.0
        self.draw(force=True)

    def update(self, fraction: float) -> None:
        self.fraction = max(self.fraction, fraction)
        self.draw()

    def draw(self, force: bool = False, end: str = "") -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < 0.2):
            return
        self._drawn = now
        done = min(1.0, (max(0, self.step_index) + self.fraction) / self.steps)
        filled = int(done * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = (f"\r{self.name:<11} [{bar}] {done:4.0%}  {self.label[:38]:<38} "
                f"{now - self.started:5.1f} s")
        self.stream.write(line + end)
        self.stream.flush()

    def end(self) -> None:
        self.step_index, self.fraction, self.label = self.steps, 0.0, "done"
        self.draw(force=True, end="\n")


# --- results --------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the table: a metric for wsdemo, the baselines, the raw ceiling."""

    scenario: str
    key: str  # stable name for the notebook: "latency.p50", "fanout.100", ...
    metric: str
    unit: str
    better: str  # "higher" or "lower"
    wsdemo: float | None
    baselines: dict[str, float | None] = field(default_factory=dict)
    ceiling: float | None = None  # the same job against the raw asyncio server
    note: str = ""
    ratios: dict[str, float | None] = field(default_factory=dict)
    generator_ahead: bool | None = None  # the raw run beat every server measured here
    judge: bool = True  # False where the raw column is a floor, not a race (memory, counts)

    def __post_init__(self) -> None:
        self.ratios = {name: _ratio(self.wsdemo, value) for name, value in self.baselines.items()}
        measured = [v for v in (self.wsdemo, *self.baselines.values()) if v is not None]
        if self.judge and self.ceiling is not None and measured:
            if self.better == "higher":
                self.generator_ahead = self.ceiling > max(measured)
            else:
                self.generator_ahead = self.ceiling < min(measured)


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


class Bench:
    """One run: the settings, the generator, the progress bar and the rows so far."""

    def __init__(self, settings: Settings, progress: Progress, workdir: Path):
        self.settings = settings
        self.progress = progress
        self.workdir = workdir
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cpus) >= 2:
            self.server_cpu, self.generator_cpu = cpus[0], cpus[1]
            self.placement = (f"servers pinned to CPU {cpus[0]}, load generator to CPU "
                              f"{cpus[1]}, this process unpinned (mostly waiting)")
        else:
            self.server_cpu = self.generator_cpu = None
            self.placement = "one CPU: servers and generator share it (ratios still hold)"
        self.generator = Generator(self.generator_cpu)
        self.rows: list[Row] = []
        self.skipped: list[dict[str, str]] = []
        self.failed: list[dict[str, str]] = []
        self.details: dict[str, Any] = {}
        self.ceilings: dict[str, float] = {}
        self.echo_cpu: dict[str, float | None] = {}  # server CPU µs per echoed message
        self.timings: dict[str, float] = {}
        self._shared: dict[str, Server] = {}

    def server(self, kind: str, *options: str, label: str | None = None) -> Server:
        """A fresh server process (stop it when done)."""
        return Server(kind, *options, cpu=self.server_cpu, label=label)

    def shared(self, kind: str) -> Server:
        """The long-lived server of ``kind`` that the throughput scenarios share.

        Starting a server costs about a second (imports); fresh ones are kept for
        what the past of a process would skew (memory) or what needs other options
        (a SQLite log). Its event log (memory) holds the catch-up history already.
        """
        server = self._shared.get(kind)
        if server is None or server.proc.poll() is not None:
            events = self.settings.missed if self.settings.wants("catchup") else 0
            server = self._shared[kind] = self.warm(self.server(kind, "--events", str(events)))
        return server

    def warm(self, server: Server) -> Server:
        """A few round trips first: what a process does once (lazy imports, first
        allocations) must not land in the first measurement."""
        if server.name.startswith("wsdemo"):
            job = {**_wsdemo_target(server.port, *_joined("controls")), "template": SET,
                   "reply": EVENT}
        else:
            job = {"port": server.port, "path": "/echo", "template": PUBLISH, "reply": ""}
        self.generator.run({**job, "op": "latency", "count": 20, "warmup": 0,
                            "max_seconds": 5}, 30)
        return server

    def job(self, job: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        return self.generator.run(job, timeout, self.progress.update)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row


def _wsdemo_target(port: int, *setup: tuple[str, str]) -> dict[str, Any]:
    return {"port": port, "path": "/ws", "subprotocol": SUBPROTOCOL,
            "setup": [[encode_text(text).hex(), marker] for text, marker in setup]}


def _joined(room: str) -> list[tuple[str, str]]:
    join = f'{{"type":"join","room":"{room}"}}'
    return [(HELLO, '"type":"welcome"'), (join, '"type":"snapshot"')]


# --- the scenarios ----------------------------------------------------------------------------

def scenario_ceiling(bench: Bench) -> None:
    """The generator against a raw asyncio echo first, then the bare servers' echo."""
    s = bench.settings
    rates: dict[str, float] = {}
    bench.progress.begin("ceiling", 3)
    for kind in ("raw", *BASELINES):
        bench.progress.step(f"echo, {s.echo_window} in flight: {kind}")
        server = bench.shared(kind)
        result = bench.job({"op": "echo_rate", "port": server.port, "path": "/echo",
                            "template": PUBLISH, "pool": 4096, "cycle": True,
                            "window": s.echo_window, "seconds": s.seconds,
                            "server_pid": server.pid})
        rates[kind] = result["rate"]
        bench.echo_cpu[kind] = _cpu_per(result)
    bench.progress.end()
    bench.ceilings["echo"] = rates["raw"]
    bench.add(Row("ceiling", "ceiling.echo", f"echo, {s.echo_window} in flight", "msg/s",
                  "higher", None, {k: rates[k] for k in BASELINES}, rates["raw"],
                  note="raw = generator vs raw asyncio echo: the generator's own ceiling"))


def scenario_latency(bench: Bench) -> None:
    s = bench.settings
    samples: dict[str, list[float]] = {}
    bench.progress.begin("latency", 4)
    for kind in ("raw", *BASELINES, "wsdemo"):
        bench.progress.step(f"{s.round_trips} round trips: {kind}")
        server = bench.shared(kind)
        if kind == "wsdemo":
            target = _wsdemo_target(server.port, *_joined("controls"))
            job = {**target, "template": SET, "reply": EVENT}
        else:
            job = {"port": server.port, "path": "/echo", "template": PUBLISH, "reply": ""}
        result = bench.job({**job, "op": "latency", "count": s.round_trips,
                            "max_seconds": s.latency_seconds})
        samples[kind] = result["samples_us"]
    bench.progress.end()
    bench.details["latency_samples_us"] = samples
    for q in (50, 99):
        values = {k: percentile(v, q) for k, v in samples.items() if v}
        bench.add(Row("latency", f"latency.p{q}", f"set→event round trip p{q}", "µs", "lower",
                      values.get("wsdemo"), {k: values.get(k) for k in BASELINES},
                      # raw is the generator's own floor here: shown, not raced (a
                      # busy machine can move a p50 of 100 µs by as much)
                      values.get("raw"), judge=False,
                      note=f"baselines: echo; n={len(samples.get('wsdemo', []))} round trips"))


def scenario_fanout(bench: Bench) -> None:
    s = bench.settings
    kinds = ("raw", *BASELINES, "wsdemo")
    results: dict[int, dict[str, dict[str, Any]]] = {n: {} for n in s.clients}
    bench.progress.begin("fanout", len(kinds) * len(s.clients))
    for kind in kinds:
        server = bench.shared(kind)
        for n in s.clients:
            bench.progress.step(f"{n} clients: {kind}")
            if kind == "wsdemo":
                job = {**_wsdemo_target(server.port, *_joined("bench")), "event": EVENT,
                       "cycle": False}
            else:
                job = {"port": server.port, "path": "/broadcast", "cycle": True}
            results[n][kind] = bench.job(
                {**job, "op": "fanout", "clients": n, "window": _window(s, n),
                 "template": PUBLISH, "pool": _fanout_pool(s, n), "seconds": s.seconds,
                 "settle_limit": s.settle_limit, "server_pid": server.pid},
                timeout=s.settle_limit + 120)
    bench.progress.end()
    bench.details["fanout"] = {str(n): r for n, r in results.items()}
    for n in s.clients:
        r = results[n]
        rate = {k: v["rate"] for k, v in r.items()}
        notes = []
        lost = {k: v["missing"] for k, v in r.items() if v["missing"] or v["closed"]}
        if lost:
            notes.append("not delivered: " + ", ".join(f"{k} {v}" for k, v in lost.items()))
        dropped = {k: v["publisher_closed"] for k, v in r.items() if v.get("publisher_closed")}
        if dropped:
            notes.append("the server closed the publisher: "
                         + ", ".join(f"{k} {v}" for k, v in dropped.items()))
        unsettled = [k for k, v in r.items() if not v["settled"]]
        if unsettled:
            notes.append(f"still busy after {s.settle_limit:g} s of joining: "
                         + ", ".join(unsettled))
        if any(v["pool_exhausted"] for v in r.values()):
            notes.append("ran out of pre-built frames (rate is a lower bound)")
        bench.add(Row("fanout", f"fanout.{n}", f"broadcast to {n} client{'s' * (n > 1)}",
                      "deliveries/s", "higher", rate.get("wsdemo"),
                      {k: rate.get(k) for k in BASELINES}, rate.get("raw"),
                      note="; ".join(notes)))
    for n in s.clients:
        cpu = {k: _cpu_per(v) for k, v in results[n].items()}
        bench.add(Row("fanout", f"fanout.cpu.{n}", f"server CPU per delivery, {n} client"
                      f"{'s' * (n > 1)}", "µs", "lower", cpu.get("wsdemo"),
                      {k: cpu.get(k) for k in BASELINES}, cpu.get("raw"), judge=False,
                      note="CPU time / deliveries: steadier than a rate on a busy machine"
                      if n == s.clients[0] else ""))
    for n in (n for n in s.clients if n > 1):
        r = results[n]
        took = {k: v["connect_seconds"] + v["settle_seconds"] for k, v in r.items()}
        w = r.get("wsdemo")
        note = "bare servers: connect only"
        if w is not None:
            note = (f"wsdemo: connect, hello, join; {w['setup_frames']:,} messages, "
                    f"{w['setup_frames'] / n:.1f} per client (presence coalesced per "
                    f"room); " + note)
        bench.add(Row("fanout", f"join.{n}", f"{n} clients in one room", "s", "lower",
                      took.get("wsdemo"), {k: took.get(k) for k in BASELINES}, took.get("raw"),
                      note=note, judge=False))


# --- the goals the control server is held to -------------------------------------------------
#
# Each: what is promised, and how to read it from the rows (None: not measured in this run).

def _goal_ratio(rows: dict[str, dict[str, Any]], key: str, base: str) -> float | None:
    row = rows.get(key)
    return None if row is None else row["ratios"].get(base)


def _goal_value(rows: dict[str, dict[str, Any]], key: str, base: str | None = None) -> float | None:
    row = rows.get(key)
    if row is None:
        return None
    return row["wsdemo"] if base is None else row["baselines"].get(base)


def _all(*checks: bool | None) -> bool | None:
    return None if any(c is None for c in checks) else all(checks)


def _at_least(value: float | None, floor: float) -> bool | None:
    return None if value is None else value >= floor


def _at_most(value: float | None, ceiling: float) -> bool | None:
    return None if value is None else value <= ceiling


def _quotient(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


GOALS: list[tuple[str, Callable[[dict[str, dict[str, Any]]], tuple[bool | None, str]]]] = []


def _goal(text: str):
    def register(fn):
        GOALS.append((text, fn))
        return fn
    return register


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


@_goal("broadcast to 100 and 1,000 clients: >= 1.2x tornado and >= 1.0x websockets")
def _goal_fanout(rows):
    keys = [k for k in ("fanout.100", "fanout.1000") if k in rows]
    checks = [_all(_at_least(_goal_ratio(rows, k, "tornado"), 1.2),
                   _at_least(_goal_ratio(rows, k, "websockets"), 1.0)) for k in keys]
    seen = "; ".join(f"{k.split('.')[1]}: {_x(_goal_ratio(rows, k, 'tornado'))} tornado, "
                     f"{_x(_goal_ratio(rows, k, 'websockets'))} websockets" for k in keys)
    return (_all(*checks) if keys else None), seen


@_goal("server CPU per delivery at 100 and 1,000 clients: <= websockets'")
def _goal_fanout_cpu(rows):
    keys = [k for k in ("fanout.cpu.100", "fanout.cpu.1000") if k in rows]
    checks = [_at_most(_goal_ratio(rows, k, "websockets"), 1.0) for k in keys]
    return (_all(*checks) if keys else None), ", ".join(
        f"{_x(_goal_ratio(rows, k, 'websockets'))}" for k in keys)


@_goal("1,000 clients connect, hello and join one room: <= 3x tornado accepting 1,000")
def _goal_join(rows):
    r = _goal_ratio(rows, "join.1000", "tornado")
    return _at_most(r, 3.0), _x(r)


@_goal("publish -> ack, memory log: >= 0.8x tornado echo")
def _goal_publish(rows):
    r = _goal_ratio(rows, "publish.memory", "tornado")
    return _at_least(r, 0.8), _x(r)


@_goal("publish -> ack, SQLite NORMAL: >= 0.5x the memory log")
def _goal_publish_sqlite(rows):
    r = _quotient(_goal_value(rows, "publish.normal"), _goal_value(rows, "publish.memory"))
    return _at_least(r, 0.5), _x(r)


@_goal("server CPU per publish (memory log): <= 2x tornado's CPU per echoed message")
def _goal_publish_cpu(rows):
    r = _goal_ratio(rows, "publish.cpu.memory", "tornado")
    return _at_most(r, 2.0), _x(r)


@_goal("catch-up from SQLite: >= 100,000 events/s and >= 1.0x tornado's send loop")
def _goal_catchup(rows):
    rate, r = _goal_value(rows, "catchup.sqlite"), _goal_ratio(rows, "catchup.sqlite", "tornado")
    seen = "—" if rate is None else f"{rate:,.0f} events/s, {_x(r)}"
    return _all(_at_least(rate, 100_000), _at_least(r, 1.0)), seen


@_goal("set -> event round trip p50: <= 1.3x tornado echo")
def _goal_latency(rows):
    r = _goal_ratio(rows, "latency.p50", "tornado")
    return _at_most(r, 1.3), _x(r)


@_goal("memory per idle connection at 10,000: <= 1.2x tornado")
def _goal_memory(rows):
    r = _goal_ratio(rows, "memory.10000", "tornado")
    return _at_most(r, 1.2), _x(r)


@_goal("two servers on Redis: >= 1.8x one server's broadcast to 1,000")
def _goal_redis(rows):
    r = _quotient(_goal_value(rows, "redis.two.1000"), _goal_value(rows, "redis.one.1000"))
    return _at_least(r, 1.8), _x(r)


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with ``met`` (True, False, or None when this run did not measure it)."""
    rows = {row["key"]: row for row in results["rows"]}
    out = []
    for text, check in GOALS:
        met, seen = check(rows)
        out.append({"goal": text, "met": met, "measured": seen})
    return out


def _cpu_per(result: dict[str, Any], count: str = "count") -> float | None:
    """Server CPU µs per message of a job's result (None below one clock tick)."""
    cpu = result.get("server_cpu")
    return cpu * 1e6 / result[count] if cpu and result.get(count) else None


def _window(s: Settings, clients: int) -> int:
    """Messages in flight per subscriber. Not more: a publisher far ahead of the other
    members can be closed by the control server as a slow consumer (1013) under load."""
    return s.window


def _fanout_pool(s: Settings, clients: int) -> int:
    """Publishes to build for one fan-out run: deliveries/s fall as clients grow."""
    # Sized for the fastest server measured (a broadcast to 100 members near 400k
    # deliveries/s): ids may not repeat, so a run that uses them all stops early.
    return min(s.pool, int(400_000 * (s.seconds + 1) / clients) + 500)


def scenario_connections(bench: Bench) -> None:
    s = bench.settings
    kinds = ("raw", *BASELINES, "wsdemo")
    if max(s.idle) + 100 > bench.generator.nofile:
        raise ChildFailed(f"the generator may open {bench.generator.nofile} files: "
                          f"not enough for {max(s.idle)} connections")
    per_conn: dict[int, dict[str, float]] = {n: {} for n in s.idle}
    held: dict[int, dict[str, int]] = {n: {} for n in s.idle}
    bench.progress.begin("connections", len(kinds) * len(s.idle))
    for kind in kinds:
        server = bench.server(kind)
        try:
            job: dict[str, Any] = (_wsdemo_target(server.port, (HELLO, '"type":"welcome"'))
                                   if kind == "wsdemo" else {"port": server.port, "path": "/idle"})
            # A few connections first, then gone: what the first one allocates for good
            # (imports, caches) is not a cost per connection.
            bench.job({**job, "op": "hold", "tag": "warm", "total": 20, "settle": 0.1})
            bench.job({"op": "release", "tag": "warm"})
            time.sleep(0.3)
            rss0, fds0 = server.rss_kib(), server.open_fds()
            for n in s.idle:
                bench.progress.step(f"{n} idle connections: {kind}")
                result = bench.job({**job, "op": "hold", "tag": "idle", "total": n},
                                   timeout=300)
                rss, fds = server.rss_kib(), server.open_fds()
                held[n][kind] = min(result["open"], fds - fds0)
                per_conn[n][kind] = (rss - rss0) / max(1, result["open"])
            bench.job({"op": "release", "tag": "idle"})
        finally:
            server.stop()
    bench.progress.end()
    for n in s.idle:
        m, h = per_conn[n], held[n]
        short = {k: v for k, v in h.items() if v < n}
        bench.add(Row("connections", f"connections.{n}", f"connections held of {n}", "conns",
                      "higher", h.get("wsdemo"), {k: h.get(k) for k in BASELINES}, h.get("raw"),
                      note=("short: " + ", ".join(f"{k} {v}" for k, v in short.items()))
                      if short else "all held", judge=False))
        bench.add(Row("connections", f"memory.{n}", f"memory per connection at {n}",
                      "KiB/conn", "lower", m.get("wsdemo"), {k: m.get(k) for k in BASELINES},
                      m.get("raw"), note="server RSS growth / connections (raw: floor)",
                      judge=False))


def scenario_publish(bench: Bench) -> None:
    s = bench.settings
    logs = [("memory", []),  # the shared server's log
            ("SQLite NORMAL", ["--log", f"sqlite:{bench.workdir / 'normal.sqlite'}",
                               "--sync", "NORMAL"]),
            ("SQLite FULL", ["--log", f"sqlite:{bench.workdir / 'full.sqlite'}",
                             "--sync", "FULL"])]
    rates: dict[str, float] = {}
    cpu: dict[str, float | None] = {}
    closed: dict[str, int | None] = {}
    bench.progress.begin("publish", len(logs))
    for name, options in logs:
        bench.progress.step(f"publish → ack: {name} log")
        fresh = bool(options)
        server = (bench.warm(bench.server("wsdemo", *options, label=f"wsdemo ({name} log)"))
                  if fresh else bench.shared("wsdemo"))
        try:
            result = bench.job({**_wsdemo_target(server.port, *_joined("bench")),
                                "op": "echo_rate", "template": PUBLISH, "pool": s.pool,
                                "cycle": False, "reply": ACK, "window": s.echo_window,
                                "seconds": s.seconds, "server_pid": server.pid})
            rates[name], cpu[name] = result["rate"], _cpu_per(result)
            closed[name] = result["closed"]
        finally:
            if fresh:
                server.stop()
    bench.progress.end()
    echo = next((r for r in bench.rows if r.key == "ceiling.echo"), None)
    base = echo.baselines if echo else {}
    for name, rate in rates.items():
        key = "publish." + name.split()[-1].lower()
        note = f"{s.echo_window} in flight; baselines: echo (ceiling scenario)"
        if name != "memory" and rates.get("memory"):
            note = f"{rate / rates['memory']:.2f}× the memory log; " + note
        if closed.get(name):
            note = f"THE SERVER CLOSED THE PUBLISHER ({closed[name]}) during the run; " + note
        bench.add(Row("publish", key, f"publish→ack, {name} log", "msg/s", "higher", rate,
                      dict(base), bench.ceilings.get("echo"), note=note))
    for name in rates:
        key = "publish.cpu." + name.split()[-1].lower()
        bench.add(Row("publish", key, f"server CPU per publish, {name}", "µs", "lower",
                      cpu.get(name), {k: bench.echo_cpu.get(k) for k in BASELINES},
                      bench.echo_cpu.get("raw"), judge=False,
                      note="baselines: CPU per echoed message" if name == "memory" else ""))


def scenario_catchup(bench: Bench) -> None:
    s = bench.settings
    m = s.missed
    # The shared servers hold the history already; the SQLite one is fresh.
    plan = [("raw", [], None), ("tornado", [], None), ("websockets", [], None),
            ("memory", [], "wsdemo"),
            ("SQLite", ["--events", str(m), "--log",
                        f"sqlite:{bench.workdir / 'catchup.sqlite'}"], "wsdemo")]
    rates: dict[str, float] = {}
    cpu: dict[str, float | None] = {}  # server CPU µs per replayed event
    complete: dict[str, bool] = {}
    bench.progress.begin("catchup", len(plan))
    for name, options, kind in plan:
        bench.progress.step(f"replay {m} events: {name}")
        fresh = bool(options)
        server = (bench.warm(bench.server(kind or name, *options, label=f"{kind} ({name})"))
                  if fresh else bench.shared(kind or name))
        try:
            if kind == "wsdemo":
                job = _wsdemo_target(server.port)
                trigger = RESUME
            else:
                job = {"port": server.port, "path": "/replay"}
                trigger = HELLO
            result = bench.job({**job, "op": "catchup", "events": m, "event": EVENT,
                                "end": RECOVERED, "trigger": encode_text(trigger).hex(),
                                "max_seconds": 150, "server_pid": server.pid}, timeout=180)
        finally:
            if fresh:
                server.stop()
        rates[name] = result["rate"]
        complete[name] = result["complete"]
        cpu[name] = _cpu_per(result, "events")
    bench.progress.end()
    incomplete = [k for k, ok in complete.items() if not ok]
    for log in ("memory", "SQLite"):
        note = f"{m} missed events; paced by the client's reading"
        if incomplete:
            note += "; INCOMPLETE: " + ", ".join(incomplete)
        bench.add(Row("catchup", f"catchup.{log.lower()}", f"catch-up, {log} log", "events/s",
                      "higher", rates.get(log), {k: rates.get(k) for k in BASELINES},
                      rates.get("raw"), note=note))
    for log in ("memory", "SQLite"):
        bench.add(Row("catchup", f"catchup.cpu.{log.lower()}",
                      f"server CPU per replayed event, {log}", "µs", "lower", cpu.get(log),
                      {k: cpu.get(k) for k in BASELINES}, cpu.get("raw"), judge=False))


def scenario_deflate(bench: Bench) -> None:
    """permessage-deflate (RFC 7692) off and on, for wsdemo and bare Tornado.

    The client offers it every time, as a browser does; the server decides
    (``--deflate``: Tornado's ``get_compression_options()`` returns ``{}``).
    Fresh servers: memory is measured first, while the process has nothing else.
    """
    s = bench.settings
    n, idle = s.deflate_clients, s.deflate_idle
    # At least a second: compressed, a broadcast makes few deliveries, and CPU time is
    # counted in clock ticks (10 ms).
    seconds = max(1.0, s.seconds)
    setups = [(kind, on) for kind in ("tornado", "wsdemo") for on in (False, True)]
    fan: dict[tuple[str, bool], dict[str, Any]] = {}
    mem: dict[tuple[str, bool], float] = {}
    held: dict[tuple[str, bool], dict[str, Any]] = {}
    bench.progress.begin("deflate", 2 * len(setups))
    for kind, on in setups:
        name = f"{kind}, deflate {'on' if on else 'off'}"
        server = bench.server(kind, *(["--deflate"] if on else []), label=name)
        try:
            if kind == "wsdemo":
                hold = _wsdemo_target(server.port, (HELLO, '"type":"welcome"'))
                job = {**_wsdemo_target(server.port, *_joined("bench")), "event": EVENT,
                       "cycle": False}
            else:  # one message each way, as the wsdemo client's hello and welcome
                first = encode_text(PUBLISH.replace("{n}", "0000000"))
                hold = {"port": server.port, "path": "/echo",
                        "setup": [[first.hex(), '"type":"publish"']]}
                job = {"port": server.port, "path": "/broadcast", "cycle": True}
            bench.progress.step(f"{idle} connections: {name}")
            bench.job({**hold, "op": "hold", "tag": "warm", "total": 20, "settle": 0.1,
                       "deflate": True})
            bench.job({"op": "release", "tag": "warm"})
            time.sleep(0.3)
            rss0 = server.rss_kib()
            result = bench.job({**hold, "op": "hold", "tag": "deflate", "total": idle,
                                "deflate": True}, timeout=300)
            mem[kind, on] = (server.rss_kib() - rss0) / max(1, result["open"])
            held[kind, on] = result
            bench.job({"op": "release", "tag": "deflate"})
            bench.progress.step(f"broadcast to {n}: {name}")
            fan[kind, on] = bench.job(
                {**job, "op": "fanout", "clients": n, "window": s.window, "template": PUBLISH,
                 "pool": _fanout_pool(s, n), "seconds": seconds,
                 "settle_limit": s.settle_limit, "server_pid": server.pid, "deflate": True},
                timeout=s.settle_limit + 120)
        finally:
            server.stop()
    bench.progress.end()
    bench.details["deflate"] = {f"{k} {'on' if on else 'off'}": {"fanout": fan[k, on],
                                                                   "hold": held[k, on],
                                                                   "rss_kib_per_conn": mem[k, on]}
                                for k, on in setups}

    def per(result: dict[str, Any], what: str) -> float | None:
        return result[what] / result["count"] if result.get(what) and result["count"] else None

    compared = ("wsdemo", "tornado")
    metrics = [
        ("bytes", "bytes per delivery", "B", "lower", lambda k, on: per(fan[k, on], "read_bytes")),
        ("cpu", "CPU per delivery", "µs", "lower", lambda k, on: _cpu_per(fan[k, on])),
        ("rate", f"broadcast to {n}", "deliveries/s", "higher", lambda k, on: fan[k, on]["rate"]),
        ("memory", f"memory per conn. at {idle}", "KiB/conn", "lower", lambda k, on: mem[k, on]),
    ]
    for key, metric, unit, better, value in metrics:
        for on in (False, True):
            notes = []
            if on:
                change = {k: _ratio(value(k, True), value(k, False)) for k in compared}
                notes.append("on ÷ off: " + ", ".join(f"{k} {_times(v)}"
                                                      for k, v in change.items()))
            if key == "bytes":
                checked = [fan[k, on]["bytes_checked"] for k in compared]
                agree = all(c["kernel"] == c["read"] for c in checked)
                unknown = any(c["kernel"] is None for c in checked)
                notes.append("bytes the subscribers read from their sockets / deliveries, frame "
                             "headers included; the kernel's count (TCP_INFO) "
                             + ("not available" if unknown else "agrees" if agree else
                                "DIFFERS: " + ", ".join(f"{c['kernel']} vs {c['read']}"
                                                        for c in checked)))
            wrong = [k for k in compared
                     if (fan[k, on]["deflate"] > 0) != on or (held[k, on]["deflate"] > 0) != on]
            if wrong:
                notes.append(("NOT NEGOTIATED: " if on else "NEGOTIATED ANYWAY: ")
                             + ", ".join(wrong))
            bench.add(Row("deflate", f"deflate.{key}.{'on' if on else 'off'}",
                          f"{metric}, deflate {'on' if on else 'off'}", unit, better,
                          value("wsdemo", on), {"tornado": value("tornado", on)}, None,
                          note="; ".join(notes), judge=False))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_available() -> str | None:
    """None when the Redis scenario can run, else why not."""
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed (pip install redis)"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    return None


def scenario_redis(bench: Bench) -> None:
    why = redis_available()
    if why is None and bench.settings.quick and "redis" not in bench.settings.only:
        why = "not part of --quick (run it with --only redis, or without --quick)"
    if why is not None:
        bench.skipped.append({"scenario": "redis", "reason": why})
        return
    s = bench.settings
    counts = [n for n in s.clients if n > 1] or [100]
    port = _free_port()
    cpu = bench.server_cpu
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None)
    rates: dict[int, dict[str, float]] = {n: {} for n in counts}
    setups = ("raw", "tornado", "one server", "two servers")
    try:
        _wait_for_port(port, 10)
        url = f"redis://127.0.0.1:{port}/0"
        bench.progress.begin("redis", len(setups) * len(counts))
        for setup in setups:
            servers: list[Server] = []
            try:
                if setup in ("raw", "tornado"):
                    servers.append(bench.warm(bench.server(setup)))
                else:
                    for name in ("A", "B")[: 1 if setup == "one server" else 2]:
                        servers.append(bench.warm(bench.server(
                            "wsdemo", "--log", url, label=f"wsdemo {name} (Redis)")))
                for n in counts:
                    bench.progress.step(f"{n} clients: {setup}")
                    if setup in ("raw", "tornado"):
                        job = {"port": servers[0].port, "path": "/broadcast", "cycle": True}
                    else:
                        job = {**_wsdemo_target(servers[0].port, *_joined("bench")),
                               "ports": [srv.port for srv in servers], "event": EVENT,
                               "cycle": False}
                    rates[n][setup] = bench.job(
                        {**job, "op": "fanout", "clients": n, "window": _window(s, n),
                         "template": PUBLISH, "pool": _fanout_pool(s, n), "seconds": s.seconds,
                         "settle_limit": s.settle_limit}, timeout=s.settle_limit + 120)["rate"]
            finally:
                for srv in servers:
                    srv.stop()
        bench.progress.end()
    finally:
        redis.terminate()
        try:
            redis.wait(5)
        except subprocess.TimeoutExpired:
            redis.kill()
            redis.wait()
    for n in counts:
        r = rates[n]
        for setup in ("one server", "two servers"):
            bench.add(Row("redis", f"redis.{setup.split()[0]}.{n}",
                          f"Redis log, {setup}: broadcast to {n}", "deliveries/s", "higher",
                          r.get(setup), {"tornado": r.get("tornado")}, r.get("raw"),
                          note="Redis, both servers and their clients' server side share "
                          "one CPU" if setup == "two servers" else ""))


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ChildFailed(f"nothing listens on port {port} after {timeout:g} s")


RUNNERS: dict[str, Callable[[Bench], None]] = {
    "ceiling": scenario_ceiling,
    "latency": scenario_latency,
    "fanout": scenario_fanout,
    "connections": scenario_connections,
    "publish": scenario_publish,
    "catchup": scenario_catchup,
    "deflate": scenario_deflate,
    "redis": scenario_redis,
}


# --- the run ------------------------------------------------------------------------------------

def run(settings: Settings | None = None, *, quick: bool = False,
        only: Iterable[str] = (), progress: bool | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the results (what ``--json`` writes).

    ``run(quick=True)`` is the short version the lesson plots. Every child
    process is stopped before this returns, whatever happens.
    """
    if settings is None:
        settings = Settings.quick_settings() if quick else Settings()
    if only:
        settings.only = tuple(only)
    unknown = set(settings.only) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    if progress is not None:
        settings.progress = progress
    from .load import raise_fd_limit

    raise_fd_limit()
    load_before = os.getloadavg()[0]  # before our own processes add to it
    started = time.monotonic()
    bar = Progress(settings.progress)
    workdir = Path(tempfile.mkdtemp(prefix="wsdemo-bench-"))
    bench = None
    try:
        bench = Bench(settings, bar, workdir)
        for name in SCENARIOS:
            if not settings.wants(name):
                continue
            started_scenario = time.monotonic()
            try:
                RUNNERS[name](bench)
            except ChildFailed as exc:
                if bar.enabled:
                    bar.stream.write("\n")
                bench.failed.append({"scenario": name, "error": str(exc)})
                if name == "ceiling":
                    break  # without a ceiling nothing else can be judged
            finally:
                bench.timings[name] = round(time.monotonic() - started_scenario, 1)
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return _results(bench, settings, time.monotonic() - started, load_before)


def _revision() -> str | None:
    """The checkout measured (``git describe --always --dirty``), when it is one."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _results(bench: Bench, settings: Settings, seconds: float,
             load_before: float) -> dict[str, Any]:
    import tornado
    import websockets

    judged = [r.generator_ahead for r in bench.rows if r.generator_ahead is not None]
    results = {
        "meta": {
            "settings": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in asdict(settings).items()},
            "placement": bench.placement,
            "cpus": os.cpu_count(),
            "load_before": round(load_before, 2),  # other processes' load at the start
            "revision": _revision(),
            "python": sys.version.split()[0],
            "tornado": tornado.version,
            "websockets": websockets.__version__,
            "seconds": round(seconds, 1),
            "scenario_seconds": bench.timings,
            "messages": "publish/set ≈70-80 B of JSON; events ≈110 B",
        },
        "generator": {
            "ceiling_echo_msgs_per_s": bench.ceilings.get("echo"),
            "faster_than_every_server": all(judged) if judged else None,
        },
        "rows": [asdict(r) for r in bench.rows],
        "skipped": bench.skipped,
        "failed": bench.failed,
        "details": bench.details,
    }
    results["goals"] = goals(results)
    return results


# --- the table ------------------------------------------------------------------------------------

def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "µs" or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


TABLE_WIDTH = 100
_UNITS = {"deliveries/s": "del/s", "events/s": "ev/s", "KiB/conn": "KiB/c"}


def _short_metric(metric: str) -> str:
    """The metric as the table prints it, under its scenario's heading."""
    return (metric.replace("Redis log, ", "").replace("server CPU per ", "CPU per ")
            .replace("replayed event", "replayed ev."))


def format_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table (what ``python -m wsdemo bench`` prints)."""
    meta = results["meta"]
    lines = [
        "wsdemo bench — loopback, one run; compare the ratios, not the absolute numbers",
        f"placement: {meta['placement']}",
        f"wsdemo {meta['revision'] or '?'}; python {meta['python']}, tornado {meta['tornado']}, "
        f"websockets {meta['websockets']}; {meta['messages']}",
    ]
    busy = meta["load_before"] > 0.5 * (meta["cpus"] or 1)
    lines.append(f"load average before the run: {meta['load_before']:.2f}"
                 + (" — WARNING: other processes compete for the CPUs; every number is "
                    "noisy, rates most (server CPU per delivery least)" if busy else ""))
    lines.append("")
    lines.append("How to read it: each row is one measurement of wsdemo and of the two bare "
                 "servers;")
    lines.append("×tor and ×ws are wsdemo's value divided by theirs (for a rate, above 1 is "
                 "better; for")
    lines.append("µs, s and KiB, below 1 is); raw is the load generator against a do-nothing "
                 "server, and")
    lines.append("'ahead' says the generator outran every server (so it measured them, not "
                 "itself).")
    lines.append("")
    header = ["metric", "unit", "wsdemo", "tornado", "websock.", "×tor", "×ws", "raw",
              "ahead"]
    body: list[list[str] | str] = []
    scenario = None
    for row in results["rows"]:
        if row["scenario"] != scenario:
            scenario = row["scenario"]
            body.append(scenario)
        unit = _UNITS.get(row["unit"], row["unit"])
        body.append([
            _short_metric(row["metric"]), unit, _number(row["wsdemo"], row["unit"]),
            *(_number(row["baselines"].get(b), row["unit"]) for b in BASELINES),
            *(_times(row["ratios"].get(b)) for b in BASELINES),
            _number(row["ceiling"], row["unit"]),
            {True: "yes", False: "NO", None: "—"}[row["generator_ahead"]],
        ])
    cells_only = [b for b in body if isinstance(b, list)]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *cells_only, strict=False)]
    right = {2, 3, 4, 5, 6, 7}

    def fmt(cells: list[str]) -> str:
        return " ".join(c.rjust(w) if i in right else c.ljust(w)
                        for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    lines.append(fmt(header))
    lines.append(" ".join("-" * w for w in widths))
    lines.extend(fmt(b) if isinstance(b, list) else f"{b}:" for b in body)
    lines.append("units: del/s deliveries per second, ev/s events per second, KiB/c KiB per "
                 "connection")
    notes = [(r["metric"], r["note"]) for r in results["rows"] if r["note"]]
    if notes:
        lines.append("")
        lines.extend(f"  {metric}: {note}" for metric, note in notes)
    generator = results["generator"]
    lines.append("")
    if generator["ceiling_echo_msgs_per_s"]:
        lines.append(f"generator ceiling: {generator['ceiling_echo_msgs_per_s']:,.0f} msg/s echo "
                     f"against a raw asyncio server; faster than every server it measured: "
                     f"{generator['faster_than_every_server']}")
    lines.append("")
    lines.append("goals (met / MISSED / not run; a missed goal is a known cost, not a failure):")
    for goal in goals(results):
        mark = {True: "met   ", False: "MISSED", None: "not run"}[goal["met"]]
        lines.append(f"  {mark}  {goal['goal']}: {goal['measured']}")
    for skipped in results["skipped"]:
        lines.append(f"skipped: {skipped['scenario']}: {skipped['reason']}")
    for failed in results["failed"]:
        lines.append(f"FAILED: {failed['scenario']}: {failed['error']}")
    lines.append(f"took {meta['seconds']:.0f} s")
    # A 100-column terminal: the table fits; longer sentences wrap, indented.
    wrapped = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        wrapped += textwrap.wrap(line, TABLE_WIDTH, subsequent_indent=indent) or [""]
    return "\n".join(wrapped)


# --- the command line ---------------------------------------------------------------------------

def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("counts must be at least 1")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wsdemo bench",
        description="Measure the control server against a bare Tornado server and the "
        "websockets library, in one run, on loopback. Prints a table of ratios; the load "
        "generator's own ceiling is measured first and printed next to every result.",
        epilog="scenarios: " + ", ".join(SCENARIOS) + " (ceiling always runs first)")
    full, quick = Settings(), Settings.quick_settings()

    def both(name: str) -> str:
        def text(value: Any) -> str:
            return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}"
        return f"{text(getattr(full, name))}; quick: {text(getattr(quick, name))}"

    parser.add_argument("--quick", action="store_true",
                        help="the short version (for the lesson and the tests): fewer round "
                        "trips, shorter runs, fewer clients and connections")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this scenario (repeatable, or comma-separated)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument("--clients", type=_counts, metavar="N,N,...",
                        help=f"fan-out client counts ({both('clients')})")
    parser.add_argument("--idle", type=_counts, metavar="N,N,...",
                        help=f"idle connection counts ({both('idle')})")
    parser.add_argument("--round-trips", type=int, metavar="N",
                        help=f"latency round trips per server, at most ({both('round_trips')})")
    parser.add_argument("--seconds", type=float, metavar="S",
                        help=f"length of each throughput measurement ({both('seconds')})")
    parser.add_argument("--missed", type=int, metavar="N",
                        help=f"events a catching-up client missed ({both('missed')})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m wsdemo bench [options]``; returns the exit status (1 if a scenario failed)."""
    args = build_parser().parse_args(argv)
    settings = Settings.quick_settings() if args.quick else Settings()
    only = tuple(name.strip() for value in args.only for name in value.split(",") if name.strip())
    for name, value in (("clients", args.clients), ("idle", args.idle),
                        ("round_trips", args.round_trips), ("seconds", args.seconds),
                        ("missed", args.missed)):
        if value is not None:
            setattr(settings, name, value)
    settings.progress = not args.no_progress
    try:
        results = run(settings, only=only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(format_table(results), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
