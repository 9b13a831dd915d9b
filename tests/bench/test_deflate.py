"""permessage-deflate in the benchmark: the generator's side of RFC 7692, and the
``deflate`` scenario end to end.

No timing claims (as in test_runner): the end-to-end test checks that the offer
was accepted where it should be and declined where not, that the bytes counted
are the bytes the kernel saw, and what deflate does to bytes and memory, which
is not a matter of how fast this machine is.
"""

from __future__ import annotations

import asyncio
import zlib

import pytest

from wsdemo.bench import load, servers
from wsdemo.bench import runner as bench
from wsdemo.wire import Frame, Opcode

from .test_runner import child_pids, tiny

pytestmark = pytest.mark.timeout(180)


# --- the negotiation -------------------------------------------------------------------------

def test_a_declined_offer_is_no_deflate_and_an_accepted_one_keeps_its_parameters():
    assert load.Deflate.accepted(None) is None
    assert load.Deflate.accepted("") is None
    plain = load.Deflate.accepted("permessage-deflate")
    assert (plain.server_takeover, plain.client_takeover) == (True, True)
    assert (plain.server_bits, plain.client_bits) == (15, 15)
    tight = load.Deflate.accepted(
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10")
    assert tight.server_takeover is False and tight.client_takeover is True
    assert tight.client_bits == 10


@pytest.mark.parametrize("header", ["x-webkit-deflate-frame", "permessage-deflate, foo",
                                    "permessage-deflate; level=9"])
def test_an_extension_or_parameter_we_did_not_offer_fails_the_connection(header):
    with pytest.raises(load.HandshakeFailed):
        load.Deflate.accepted(header)


def test_the_offer_is_in_the_request_only_when_asked_for():
    assert b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" in \
        load.handshake_request(8000, "/echo", None, deflate=True)
    assert b"Sec-WebSocket-Extensions" not in load.handshake_request(8000, "/echo", None)


# --- inflating what arrives -------------------------------------------------------------------

def deflated_frames(texts: list[bytes], takeover: bool = True) -> bytes:
    """Server frames as RFC 7692 §7.2.1 makes them: one raw DEFLATE stream (or one per
    message), each message flushed and its trailing 00 00 ff ff removed, RSV1 set."""
    out = b""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    for text in texts:
        if not takeover:
            z = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = z.compress(text) + z.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out += Frame(Opcode.TEXT, data[:-4], rsv1=True).serialize()
    return out


@pytest.mark.parametrize("takeover", [True, False])
async def test_compressed_messages_are_inflated_in_order_and_their_markers_found(takeover):
    texts = [b'{"type":"event","seq":%d,"data":"xxxxxxxxxxxxxxxx"}' % n for n in range(50)]
    texts[17] = b'{"type":"presence","members":[]}'
    wire = deflated_frames(texts, takeover)
    tally = load.Tally()
    conn = load.Conn(load.handshake_request(1, "/", None, deflate=True), tally, b'"type":"event"')
    head = (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate"
            + (b"" if takeover else b"; server_no_context_takeover") + b"\r\n\r\n")
    conn.data_received(head)
    assert conn.deflate is not None and conn.deflate.server_takeover is takeover
    for i in range(0, len(wire), 7):  # in pieces that cut frames and headers anywhere
        conn.data_received(wire[i:i + 7])
    assert tally.frames == 50 and tally.matched == 49
    assert tally.bytes == len(wire)
    if takeover:  # the window pays: repeated messages shrink to a few bytes each
        assert len(wire) < sum(len(t) for t in texts) / 3


async def test_a_compressed_frame_without_the_extension_is_refused():
    conn = load.Conn(load.handshake_request(1, "/", None), load.Tally(), None)
    conn.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    with pytest.raises(ConnectionError):
        conn.data_received(deflated_frames([b"hello"]))


async def test_an_extension_chosen_without_an_offer_fails_the_upgrade():
    conn = load.Conn(load.handshake_request(1, "/", None), load.Tally(), None)
    conn.data_received(b"HTTP/1.1 101 Switching Protocols\r\n"
                       b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    with pytest.raises(load.HandshakeFailed):
        await asyncio.wait_for(conn.upgraded, 1)


async def test_setup_messages_are_compressed_so_that_a_peer_inflates_them():
    conn = load.Conn(load.handshake_request(1, "/", None, deflate=True), load.Tally(), None)
    conn.data_received(b"HTTP/1.1 101 Switching Protocols\r\n"
                       b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    peer = zlib.decompressobj(-15)
    for text in ('{"type":"hello","client":"bench"}', '{"type":"join","room":"bench"}'):
        frame = Frame.parse(conn.compress(load.encode_text(text)))
        assert frame.rsv1 and frame.mask == load.MASK
        assert peer.decompress(frame.payload + b"\x00\x00\xff\xff") == text.encode()


def test_deflate_is_refused_for_a_server_kind_that_has_none():
    with pytest.raises(SystemExit):
        servers.main(["raw", "--deflate"])


# --- end to end -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def results():
    before = child_pids()
    out = bench.run(tiny(deflate_clients=20, deflate_idle=60), only=["deflate"])
    out["children_left"] = child_pids() - before
    return out


def row(results, key):
    return next(r for r in results["rows"] if r["key"] == key)


def test_the_scenario_runs_and_leaves_nothing_behind(results):
    assert results["failed"] == []
    assert [r["key"] for r in results["rows"] if r["scenario"] == "deflate"] == [
        f"deflate.{m}.{s}" for m in ("bytes", "cpu", "rate", "memory") for s in ("off", "on")]
    assert results["children_left"] == set() and bench._live == set()


def test_the_offer_is_accepted_only_by_a_server_told_to(results):
    for name, detail in results["details"]["deflate"].items():
        on = name.endswith(" on")
        assert (detail["fanout"]["deflate"] == detail["fanout"]["subscribers"]) is on, name
        assert (detail["hold"]["deflate"] == detail["hold"]["open"] == 60) is on or not on, name
        assert (detail["fanout"]["deflate"] == 0) is not on, name
    assert all("NEGOTIATED" not in r["note"] for r in results["rows"])


def test_the_bytes_counted_are_the_bytes_the_kernel_received(results):
    # From the quiet after the joins to the quiet after the drain: every byte read.
    for name, detail in results["details"]["deflate"].items():
        checked = detail["fanout"]["bytes_checked"]
        assert checked["read"] > detail["fanout"]["read_bytes"] > 0, name
        assert checked["kernel"] == checked["read"], name
    for key in ("deflate.bytes.off", "deflate.bytes.on"):
        assert "the kernel's count (TCP_INFO) agrees" in row(results, key)["note"]


def test_uncompressed_a_bare_broadcast_costs_exactly_its_frame(results):
    # The bare Tornado relays the publish as it came: a 2-byte header and 75 bytes of JSON.
    frame = Frame(Opcode.TEXT, bench.PUBLISH.replace("{n}", "0000001").encode()).serialize()
    assert len(frame) == 77
    assert row(results, "deflate.bytes.off")["baselines"]["tornado"] == pytest.approx(77, rel=0.01)


def test_deflate_saves_bytes_on_the_wire_and_costs_memory_per_connection(results):
    for server in ("wsdemo", "tornado"):
        def value(key, server=server):
            r = row(results, key)
            return r["wsdemo"] if server == "wsdemo" else r["baselines"]["tornado"]
        assert value("deflate.bytes.on") < value("deflate.bytes.off") / 2, server
        # A zlib compressor and decompressor per connection: tens of KiB at least.
        assert value("deflate.memory.on") > value("deflate.memory.off") + 32, server


def test_the_table_prints_the_deflate_rows_within_100_columns(results):
    table = bench.format_table(results)
    assert "bytes per delivery, deflate on" in table
    assert max(len(line) for line in table.splitlines()) <= 100
