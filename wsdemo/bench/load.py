"""The benchmark's load generator: raw asyncio protocols and pre-encoded frames.

Why not a WebSocket library? DESIGN §8: the ``websockets`` client tops out
near 30k msg/s, so a generator built on it measures itself. This one does the
least a client can do: every frame it sends is built once, before the clock
starts (masked with a fixed key by :mod:`wsdemo.wire`), and every frame it
receives is only *cut* out of the stream — a header read, a length added, a
marker searched for in place — never decoded into an object.

It runs as its own process (``python -m wsdemo.bench.load --cpu 1``), pinned
to one CPU so that the server under test has the other. The orchestrator
(:mod:`wsdemo.bench`) sends one job per line on stdin (JSON) and reads JSON
lines back on stdout: ``{"id", "progress": [done, total]}`` while a job runs,
then ``{"id", "result": {...}}`` or ``{"id", "error": "..."}``. End of stdin
ends the process, so it never outlives the benchmark that started it.

Connections survive between jobs when tagged (``hold`` / ``release``), so
the orchestrator can read a server's memory while they are held.

A job with ``"deflate": true`` offers permessage-deflate (RFC 7692) as a browser
does (``permessage-deflate; client_max_window_bits``). Where the server accepts,
each connection inflates the compressed messages it receives (its own zlib
state, RFC 7692 §7.2.2) to find its markers, and compresses its setup messages
(hello, join); the measured stream of requests goes uncompressed, with RSV1
clear, which the extension allows per message (RFC 7692 §6). Every connection
counts the bytes it reads from its socket, so a job can say how many bytes a
delivery took on the wire, compressed or not.

Why one file of this length: the load generator is a process of its own and imports
nothing of wsdemo but the codec; splitting it would only add imports to the process
being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import socket
import struct
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

from ..wire import Frame, Opcode, ResponseParser, build_request, check_response

__all__ = ["Conn", "Tally", "encode_text", "handshake_request", "main"]

# RFC 6455 §5.7's example key: fixed, so every run sends the same bytes.
MASK = b"\x37\xfa\x21\x3d"
CONNECT_CONCURRENCY = 64  # below every server's listen backlog (Tornado's is 128)


def encode_text(text: str) -> bytes:
    """One masked client text frame, as it goes on the wire."""
    return Frame(Opcode.TEXT, text.encode(), mask=MASK).serialize()


# What Chromium and Firefox offer: the extension, and that our window may be made smaller.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"


def handshake_request(port: int, path: str, subprotocol: str | None,
                      deflate: bool = False) -> bytes:
    """The opening handshake every connection of a job sends (built once per job)."""
    request = build_request(f"127.0.0.1:{port}", path, key="dGhlIHNhbXBsZSBub25jZQ==",
                            subprotocols=[subprotocol] if subprotocol else [],
                            extra_headers=[("Sec-WebSocket-Extensions", DEFLATE_OFFER)]
                            if deflate else [])
    return request.serialize()


def response_header(head: bytes, name: str) -> str | None:
    """One header of a raw HTTP response head (the first of that name), or None."""
    want = name.lower().encode()
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == want:
            return value.strip().decode("latin-1")
    return None


class Deflate:
    """The permessage-deflate parameters a server accepted (RFC 7692 §7.1)."""

    __slots__ = ("client_bits", "client_takeover", "server_bits", "server_takeover")

    def __init__(self, params: dict[str, str | None]):
        self.server_takeover = "server_no_context_takeover" not in params
        self.client_takeover = "client_no_context_takeover" not in params
        self.server_bits = int(params.get("server_max_window_bits") or 15)
        self.client_bits = int(params.get("client_max_window_bits") or 15)

    @classmethod
    def accepted(cls, header: str | None) -> Deflate | None:
        """The server's ``Sec-WebSocket-Extensions``: None when it declined (no header).

        Anything but one permessage-deflate with parameters we may accept is an error:
        the client must then fail the connection (RFC 6455 §4.1, RFC 7692 §5).
        """
        if not header:
            return None
        names = [e.split(";")[0].strip().lower() for e in header.split(",")]
        if names != ["permessage-deflate"]:
            raise HandshakeFailed(f"server chose extensions we did not offer: {header}")
        params: dict[str, str | None] = {}
        for part in header.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            params[key.strip().lower()] = value.strip().strip('"') or None
        known = {"server_no_context_takeover", "client_no_context_takeover",
                 "server_max_window_bits", "client_max_window_bits"}
        if set(params) - known:
            raise HandshakeFailed(f"unknown permessage-deflate parameter in {header!r}")
        return cls(params)


class HandshakeFailed(Exception):
    """The server did not answer the upgrade with 101."""


class Tally:
    """Counts shared by many connections: frames received, those that matched, and the
    bytes read from their sockets once upgraded (frame headers, compressed payloads:
    what crossed the wire, less TCP/IP's own headers)."""

    __slots__ = ("bytes", "frames", "last", "matched", "on_matched")

    def __init__(self, on_matched: Callable[[int], None] | None = None):
        self.bytes = 0
        self.frames = 0
        self.last = 0.0  # time.perf_counter() of the newest chunk with a frame
        self.matched = 0
        self.on_matched = on_matched  # called with the count of matching frames per chunk


class Conn(asyncio.Protocol):
    """One client connection: handshake, then frames cut out of the stream.

    ``marker``: a data frame counts as *matched* when its payload contains it
    (None: every data frame). ``exchange(frame, marker)`` sends one frame and
    waits for the first frame containing ``marker`` — a round trip.
    """

    def __init__(self, request: bytes, tally: Tally, marker: bytes | None = None):
        self.request = request
        self.tally = tally
        self.marker = marker
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.close_code: int | None = None
        self.matched = 0
        self.deflate: Deflate | None = None  # set by the 101, if the server accepted it
        self._inflater: Any = None
        self._deflater: Any = None
        self._compressed: bytearray | None = None  # a compressed message not yet whole
        self._rest = b""
        self._head = bytearray()
        self._waiting: tuple[bytes, asyncio.Future[bytes]] | None = None

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._head[:end + 4])
            data = bytes(self._head[end + 4:])
            self._head = bytearray()
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(HandshakeFailed(head.split(b"\r\n", 1)[0].decode()))
                self.abort()
                return
            try:
                self._negotiated(response_header(head, "Sec-WebSocket-Extensions"))
            except HandshakeFailed as exc:
                self.upgraded.set_exception(exc)
                self.abort()
                return
            self.upgraded.set_result(head)
            if not data:
                return
        self.tally.bytes += len(data)
        self._cut(self._rest + data if self._rest else data)

    def _negotiated(self, extensions: str | None) -> None:
        offered = b"permessage-deflate" in self.request
        deflate = Deflate.accepted(extensions)
        if deflate is not None and not offered:
            raise HandshakeFailed("server chose an extension we did not offer")
        self.deflate = deflate
        if deflate is not None:
            self._inflater = zlib.decompressobj(-deflate.server_bits)
            self._deflater = zlib.compressobj(6, zlib.DEFLATED, -deflate.client_bits)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionResetError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)
        if self._waiting is not None and not self._waiting[1].done():
            self._waiting[1].set_exception(ConnectionResetError(
                f"connection closed ({self.close_code})"))

    # --- frames --------------------------------------------------------------------

    def _cut(self, buf: bytes) -> None:
        """Count the complete frames in ``buf``; keep the partial one for the next chunk."""
        n = len(buf)
        i = 0
        frames = matched = 0
        marker = self.marker
        waiting = self._waiting
        while n - i >= 2:
            b1 = buf[i + 1]
            size = b1 & 0x7F
            start = i + 2
            if size == 126:
                if n - i < 4:
                    break
                size = (buf[i + 2] << 8) | buf[i + 3]
                start = i + 4
            elif size == 127:
                if n - i < 10:
                    break
                size = int.from_bytes(buf[i + 2:i + 10], "big")
                start = i + 10
            if b1 & 0x80:  # masked: our own frame coming back from a raw TCP echo
                start += 4
            end = start + size
            if end > n:
                break
            opcode = buf[i] & 0x0F
            if opcode >= 8:
                self._control(opcode, buf[start:end])
            else:
                frames += 1
                text, at, to = buf, start, end
                if buf[i] & 0x40 or self._compressed is not None:  # RSV1: compressed
                    text = self._inflate(buf[start:end], bool(buf[i] & 0x80))
                    at, to = 0, len(text)
                if marker is None or text.find(marker, at, to) >= 0:
                    matched += 1
                if waiting is not None and text.find(waiting[0], at, to) >= 0:
                    self._waiting = None
                    if not waiting[1].done():
                        waiting[1].set_result(text[at:to])
                    waiting = None
            i = end
        self._rest = buf[i:] if i < n else b""
        if frames:
            tally = self.tally
            tally.frames += frames
            tally.last = time.perf_counter()
            if matched:
                self.matched += matched
                tally.matched += matched
                if tally.on_matched is not None:
                    tally.on_matched(matched)

    def _inflate(self, payload: bytes, fin: bool) -> bytes:
        """A compressed message's text once its last frame is in (RFC 7692 §7.2.2); b""
        for the frames before it."""
        if self._inflater is None:
            raise ConnectionError("RSV1 set, but permessage-deflate was not negotiated")
        if self._compressed is None:
            self._compressed = bytearray()
        self._compressed += payload
        if not fin:
            return b""
        data = bytes(self._compressed) + b"\x00\x00\xff\xff"
        self._compressed = None
        text = self._inflater.decompress(data)
        if self.deflate is not None and not self.deflate.server_takeover:
            self._inflater = zlib.decompressobj(-self.deflate.server_bits)
        return text

    def compress(self, frame: bytes) -> bytes:
        """``frame`` (one masked, unfragmented client frame) compressed, when deflate is on
        (RFC 7692 §7.2.1): the same message, RSV1 set; else ``frame`` itself."""
        if self.deflate is None:
            return frame
        parsed = Frame.parse(frame)
        data = self._deflater.compress(parsed.payload) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        if not self.deflate.client_takeover:
            self._deflater = zlib.compressobj(6, zlib.DEFLATED, -self.deflate.client_bits)
        return Frame(parsed.opcode, data[:-4], rsv1=True, mask=MASK).serialize()

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == Opcode.PING:
            self.write(Frame(Opcode.PONG, payload, mask=MASK).serialize())
        elif opcode == Opcode.CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.write(Frame(Opcode.CLOSE, payload[:2], mask=MASK).serialize())
            if self.transport is not None:
                self.transport.close()

    # --- sending -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def exchange(self, frame: bytes, marker: bytes, timeout: float = 10.0) -> bytes:
        """Send ``frame``; return the payload of the first frame that contains ``marker``."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting = (marker, future)
        self.write(frame)
        return await asyncio.wait_for(future, timeout)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def open(self) -> bool:
        return self.upgraded.done() and not self.closed.done()


# --- the jobs ------------------------------------------------------------------------

class Job:
    """What every job has: its id, a progress line now and then, and a deadline."""

    def __init__(self, spec: dict[str, Any], emit: Callable[[dict[str, Any]], None]):
        self.spec = spec
        self.id = spec.get("id")
        self._emit = emit
        self._last_progress = 0.0
        # The part of the whole job that the current phase covers (connecting, measuring),
        # so the bar moves forward only.
        self.phase = (0.0, 1.0)

    def progress(self, done: float, total: float, force: bool = False) -> None:
        now = time.monotonic()
        if total and (force or now - self._last_progress >= 0.2):
            self._last_progress = now
            start, span = self.phase
            self._emit({"id": self.id, "progress": [start + span * min(1, done / total), 1]})


class FramePool:
    """Masked frames from one template (``{n}``: a 7-digit message number), built ahead.

    Distinct because the control server dedupes by message id: a repeated id
    would be answered as a duplicate and not broadcast. A job that needs
    unused ids takes the next ones (no id is used twice in a run, even against
    a server that lives through several jobs); a job against a server that
    does not dedupe cycles through the first ones. Frames are built before a
    job starts its clock, never during a measurement.
    """

    _pools: dict[str, FramePool] = {}

    def __init__(self, template: str):
        self.template = template
        self.frames: list[bytes] = []
        self.used = 0  # frames handed out for good (the ids a server may remember)

    @classmethod
    def of(cls, template: str) -> FramePool:
        pool = cls._pools.get(template)
        if pool is None:
            pool = cls._pools[template] = cls(template)
        return pool

    def build(self, count: int) -> None:
        # {v} alternates 3 and 7: a control set to a new value each time, as a user would.
        for n in range(len(self.frames), count):
            text = self.template.replace("{n}", f"{n:07d}").replace("{v}", str(3 + 4 * (n % 2)))
            self.frames.append(encode_text(text))

    def source(self, count: int, cycle: bool) -> FrameSource:
        self.build(count if cycle else self.used + count)
        return FrameSource(self, count, cycle)


class FrameSource:
    """The frames of one job: ``take(k)`` gives the next ``k`` as one write."""

    def __init__(self, pool: FramePool, count: int, cycle: bool):
        self.pool = pool
        self.cycle = cycle
        self.start = 0 if cycle else pool.used
        self.end = self.start + count
        self.sent = 0

    @property
    def exhausted(self) -> bool:
        """Every unused frame was sent: the run may have been cut short by its pool."""
        return not self.cycle and self.start + self.sent >= self.end

    def take(self, k: int) -> bytes:
        frames = self.pool.frames
        at = self.start + self.sent
        if self.cycle:
            span = self.end - self.start
            batch = [frames[self.start + (at - self.start + j) % span] for j in range(k)]
        else:
            batch = frames[at:min(at + k, self.end)]
            self.pool.used = max(self.pool.used, at + len(batch))
        self.sent += len(batch)
        return b"".join(batch)


async def open_conns(job: Job, spec: dict[str, Any], n: int, tally: Tally,
                     marker: bytes | None, done_before: int = 0,
                     total: int | None = None) -> tuple[list[Conn], list[str]]:
    """Open ``n`` connections, each upgraded and through its setup steps.

    At most ``CONNECT_CONCURRENCY`` handshakes are in flight. Failures are
    counted and returned (the first few as text), not raised: holding 10,000
    connections is the measurement, and a server that drops some is a result.
    """
    loop = asyncio.get_running_loop()
    request = handshake_request(spec["port"], spec.get("path", "/"), spec.get("subprotocol"),
                                spec.get("deflate", False))
    setup = [(bytes.fromhex(f), m.encode()) for f, m in spec.get("setup", [])]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    conns: list[Conn] = []
    errors: list[str] = []
    total = n if total is None else total
    checked = False

    async def one() -> None:
        nonlocal checked
        async with gate:
            try:
                _, conn = await asyncio.wait_for(loop.create_connection(
                    lambda: Conn(request, tally, marker), "127.0.0.1", spec["port"]), 10)
                head = await asyncio.wait_for(conn.upgraded, 10)
                if not checked:  # the first answer is checked in full, by the wire codec
                    checked = True
                    _check_handshake(request, head)
                for frame, wait_for in setup:
                    await conn.exchange(conn.compress(frame), wait_for)
            except Exception as exc:  # counted: a refused connection is a result
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    errors.append("")
                return
            conns.append(conn)
            if total > 1:
                job.progress(done_before + len(conns), total)

    await asyncio.gather(*(one() for _ in range(n)))
    return conns, errors


def _check_handshake(request: bytes, head: bytes) -> None:
    """The rest of RFC 6455 §4.1's checks, by the course's codec. The codec knows no
    extension: the one we offered was checked by :meth:`Deflate.accepted`, and is left
    out here."""
    from dataclasses import replace

    from ..wire import RequestParser

    parsed_request = RequestParser().feed(request)
    response = ResponseParser().feed(head)
    assert parsed_request is not None and response is not None
    response = replace(response, headers=tuple(
        (k, v) for k, v in response.headers if k.lower() != "sec-websocket-extensions"))
    check_response(parsed_request, response)


async def wait_quiet(tally: Tally, busy_since: float, limit: float = 60.0) -> tuple[float, bool]:
    """Wait until no frame has arrived for a while, at most ``limit`` seconds.

    "A while" grows with how long the server has been busy (a tenth of it, from
    0.3 to 2 s): a server that has sent messages for half a minute can pause for
    more than 0.3 s (a collection, a time slice lost to another process) without
    being done. Returns the time it took — until the last frame arrived, not
    until the silence was noticed — and whether it did get quiet.
    """
    started = time.perf_counter()
    seen = tally.frames
    while time.perf_counter() - started < limit:
        quiet = max(0.3, min(2.0, (time.perf_counter() - busy_since) / 10))
        await asyncio.sleep(quiet)
        if tally.frames == seen:
            return max(0.0, tally.last - started), True
        seen = tally.frames
    return time.perf_counter() - started, False


async def job_latency(job: Job) -> dict[str, Any]:
    """Round trips one at a time: send, wait for the reply, note the time."""
    spec = job.spec
    count, warmup = spec["count"], spec.get("warmup", 100)
    frames = FramePool.of(spec["template"]).source(count + warmup, cycle=False)
    marker = spec.get("reply", "").encode()
    conns, errors = await open_conns(job, spec, 1, Tally(), None)
    if not conns:
        raise RuntimeError(f"cannot connect: {errors[0]}")
    conn = conns[0]
    samples: list[float] = []
    clock = time.perf_counter
    warm_until = clock() + 0.5  # warm-up: `warmup` round trips, or half a second
    deadline = clock() + spec.get("max_seconds", 30)
    try:
        for n in range(count + warmup):
            frame = frames.take(1)
            started = clock()
            await conn.exchange(frame, marker, timeout=5)
            if n >= warmup or started > warm_until:
                samples.append(clock() - started)
                job.progress(len(samples), count)
                if len(samples) == count:
                    break
            if started > deadline:
                break
    finally:
        conn.abort()
    return {"samples_us": [round(s * 1e6, 1) for s in samples]}


async def job_echo_rate(job: Job) -> dict[str, Any]:
    """One connection, ``window`` requests in flight: each reply sends the next request."""
    spec = job.spec
    window, seconds = spec["window"], spec["seconds"]
    # cycle=False where the server dedupes by id
    frames = FramePool.of(spec["template"]).source(spec["pool"], spec.get("cycle", True))
    marker = spec["reply"].encode() if spec.get("reply") else None
    state = {"stopped": False}

    def send(k: int) -> None:
        if not state["stopped"]:
            batch = frames.take(k)
            if batch:
                conn.write(batch)

    tally = Tally(on_matched=send)
    conns, errors = await open_conns(job, spec, 1, tally, marker)
    if not conns:
        raise RuntimeError(f"cannot connect: {errors[0]}")
    conn = conns[0]
    try:
        send(window)
        result = await _measure_rate(job, tally, seconds, spec.get("warmup", 0.2),
                                     stop=lambda: state.__setitem__("stopped", True),
                                     extra=lambda: {"sent": frames.sent,
                                                    "pool_exhausted": frames.exhausted})
        # A server may close a client that it thinks is too slow (1013): then the
        # rate above covers only part of the run, and the reason is the result.
        result["closed"] = None if conn.open else (conn.close_code or 1006)
        result["replies"] = tally.matched
        return result
    finally:
        conn.abort()


async def _measure_rate(job: Job, tally: Tally, seconds: float, warmup: float,
                        stop: Callable[[], None],
                        extra: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Matched frames per second over ``seconds``, after ``warmup`` seconds of load.

    With ``server_pid`` in the job, also the CPU time the server used in that
    window: unlike a rate, it hardly moves when other processes compete for the CPUs.
    """
    pid = job.spec.get("server_pid")
    await asyncio.sleep(warmup)
    c0, b0, t0 = tally.matched, tally.bytes, time.perf_counter()
    cpu0 = cpu_seconds(pid)
    end = t0 + seconds
    while (now := time.perf_counter()) < end:
        await asyncio.sleep(min(0.1, end - now))
        job.progress(now - t0, seconds)
    c1, b1, t1 = tally.matched, tally.bytes, time.perf_counter()
    cpu1 = cpu_seconds(pid)
    stop()
    return {"rate": (c1 - c0) / (t1 - t0), "count": c1 - c0, "seconds": t1 - t0,
            "read_bytes": b1 - b0, "server_cpu": None if pid is None else cpu1 - cpu0,
            **extra()}


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far (0 without one), from /proc."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# struct tcp_info (linux/tcp.h): tcpi_bytes_received, a u64 after 104 bytes of older fields
# and three other u64s (pacing_rate, max_pacing_rate, bytes_acked). Linux 4.1 and later.
_TCPI_BYTES_RECEIVED = struct.Struct("=Q")
_TCPI_BYTES_RECEIVED_AT = 128


def tcp_bytes_received(conns: list[Conn]) -> int | None:
    """The kernel's count of TCP payload bytes received on these connections so far
    (``tcpi_bytes_received`` of ``TCP_INFO``, tcp(7)), or None where there is none.

    The same bytes that :class:`Tally` counts as it reads them, counted by the
    kernel as they arrive: a check on the count, from outside this program (equal
    whenever nothing is left unread).
    """
    if not conns or not hasattr(socket, "TCP_INFO"):
        return None
    total = 0
    for conn in conns:
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is None:
            continue
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        except OSError:
            continue
        if len(info) < _TCPI_BYTES_RECEIVED_AT + 8:
            return None
        total += _TCPI_BYTES_RECEIVED.unpack_from(info, _TCPI_BYTES_RECEIVED_AT)[0]
    return total


async def job_fanout(job: Job) -> dict[str, Any]:
    """N subscribers and one publisher; the publisher keeps ``window`` messages per
    subscriber in flight, counted over all subscribers (deliveries outstanding)."""
    spec = job.spec
    window, seconds = spec["window"], spec["seconds"]
    frames = FramePool.of(spec["template"]).source(spec["pool"], spec.get("cycle", True))
    marker = spec["event"].encode() if spec.get("event") else None
    state = {"stopped": False}
    publisher: Conn | None = None

    def send_more(_: int = 0) -> None:
        if state["stopped"] or publisher is None:
            return
        # Messages not yet delivered to every subscriber (counted over all of them).
        in_flight = frames.sent - sub_tally.matched // len(subs)
        room = window - in_flight
        if room <= 0:
            return
        batch = frames.take(room)
        if batch:
            publisher.write(batch)

    sub_tally = Tally()
    setup_started = time.perf_counter()
    job.phase = (0.0, 0.4)
    n = spec["clients"]
    # Subscribers spread over every server given (two servers sharing a Redis log);
    # the publisher talks to the first.
    ports = spec.get("ports") or [spec["port"]]
    subs: list[Conn] = []
    errors: list[str] = []
    for k, port in enumerate(ports):
        share = n // len(ports) + (1 if k < n % len(ports) else 0)
        opened, failed = await open_conns(job, {**spec, "port": port}, share, sub_tally, marker,
                                          done_before=len(subs), total=n + 1)
        subs += opened
        errors += failed
    pubs, pub_errors = await open_conns(job, spec, 1, Tally(), None, done_before=n, total=n + 1)
    if not subs or not pubs:
        raise RuntimeError(f"cannot connect: {(errors or pub_errors)[0]}")
    publisher = pubs[0]
    connected = time.perf_counter() - setup_started
    # Joins can set off messages to every member (presence): let them finish first.
    settle, settled = await wait_quiet(sub_tally, setup_started, spec.get("settle_limit", 60))
    setup_frames = sub_tally.frames
    # Quiet now, and quiet again after the drain: between the two, what this program read
    # and what the kernel received must be the same bytes (the check on read_bytes).
    read_before, kernel_before = sub_tally.bytes, tcp_bytes_received(subs)
    sub_tally.matched = 0
    sub_tally.frames = 0
    sub_tally.on_matched = send_more
    job.phase = (0.4, 0.6)
    try:
        send_more()
        result = await _measure_rate(job, sub_tally, seconds, spec.get("warmup", 0.25),
                                     stop=lambda: state.__setitem__("stopped", True),
                                     extra=lambda: {})
        # Drain what is in flight (bounded): anything still missing was lost.
        expected = frames.sent * len(subs)
        drain_end = time.perf_counter() + 5
        while sub_tally.matched < expected and time.perf_counter() < drain_end:
            await asyncio.sleep(0.05)
        closed = [c.close_code for c in subs if not c.open]
        kernel_after = tcp_bytes_received(subs)
        result["bytes_checked"] = {
            "read": sub_tally.bytes - read_before,
            "kernel": None if kernel_before is None or kernel_after is None
            else kernel_after - kernel_before}
        result.update({
            "subscribers": len(subs), "failed": len(errors), "errors": [e for e in errors if e],
            "connect_seconds": connected, "settle_seconds": settle,
            "setup_frames": setup_frames, "settled": settled, "published": frames.sent,
            "pool_exhausted": frames.exhausted,
            "missing": max(0, expected - sub_tally.matched),
            "closed": len(closed), "close_codes": sorted({c for c in closed if c}),
            "publisher_closed": None if publisher.open else (publisher.close_code or 1006),
            "deflate": sum(c.deflate is not None for c in subs),
        })
        return result
    finally:
        for conn in (*subs, *pubs):
            conn.abort()


async def job_catchup(job: Job) -> dict[str, Any]:
    """One client asks for a replay; count the events until the end marker."""
    spec = job.spec
    tally = Tally()
    conns, errors = await open_conns(job, spec, 1, tally, spec["event"].encode())
    if not conns:
        raise RuntimeError(f"cannot connect: {errors[0]}")
    conn = conns[0]
    expected = spec["events"]
    trigger = bytes.fromhex(spec["trigger"])
    pid = spec.get("server_pid")
    started, cpu0 = time.perf_counter(), cpu_seconds(pid)
    waiter = asyncio.ensure_future(conn.exchange(trigger, spec["end"].encode(),
                                                 timeout=spec.get("max_seconds", 120)))
    try:
        while not waiter.done():
            await asyncio.wait({waiter}, timeout=0.2)
            job.progress(tally.matched, expected)
        await waiter
        elapsed, cpu1 = time.perf_counter() - started, cpu_seconds(pid)
        return {"rate": tally.matched / elapsed, "events": tally.matched, "seconds": elapsed,
                "complete": tally.matched == expected,
                "server_cpu": None if pid is None else cpu1 - cpu0}
    finally:
        waiter.cancel()
        conn.abort()


_held: dict[str, list[Conn]] = {}


async def job_hold(job: Job) -> dict[str, Any]:
    """Open connections (with their setup) and keep them, tagged, until ``release``."""
    spec = job.spec
    tag = spec["tag"]
    held = _held.setdefault(tag, [])
    held[:] = [c for c in held if c.open]
    want = spec["total"] - len(held)
    started = time.perf_counter()
    conns, errors = await open_conns(job, spec, max(0, want), Tally(), None,
                                     done_before=len(held), total=spec["total"])
    elapsed = time.perf_counter() - started
    held.extend(conns)
    await asyncio.sleep(spec.get("settle", 0.5))  # a server that drops them does it now
    still = [c for c in held if c.open]
    return {"open": len(still), "opened": len(conns), "failed": len(errors),
            "deflate": sum(c.deflate is not None for c in still),
            "errors": [e for e in errors if e], "seconds": elapsed,
            "rate": len(conns) / elapsed if elapsed > 0 else 0.0}


async def job_release(job: Job) -> dict[str, Any]:
    conns = _held.pop(job.spec["tag"], [])
    for conn in conns:
        conn.abort()
    return {"released": len(conns)}


JOBS = {
    "latency": job_latency,
    "echo_rate": job_echo_rate,
    "fanout": job_fanout,
    "catchup": job_catchup,
    "hold": job_hold,
    "release": job_release,
}


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit (10,000 connections need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_to_cpu(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


async def serve_jobs() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message, allow_nan=False) + "\n")
        sys.stdout.flush()

    emit({"ready": os.getpid(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]})
    while line := await reader.readline():
        spec = json.loads(line)
        job = Job(spec, emit)
        try:
            result = await JOBS[spec["op"]](job)
        except Exception as exc:  # reported to the orchestrator, which decides
            emit({"id": job.id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        emit({"id": job.id, "result": _finite(result)})
    for conns in _held.values():
        for conn in conns:
            conn.abort()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsdemo.bench.load",
                                     description="The benchmark's load generator (run by "
                                     "python -m wsdemo bench; jobs as JSON lines on stdin).")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    pin_to_cpu(args.cpu)
    raise_fd_limit()
    asyncio.run(serve_jobs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
