"""Reading a recorded stream (for the tap), and the codec staying sans-I/O."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsdemo.wire import (
    CapturedFrame,
    CapturedHead,
    ClientConnection,
    Frame,
    HandshakeRequest,
    HandshakeResponse,
    Opcode,
    ServerConnection,
    StreamDecoder,
    decode_stream,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = bytes.fromhex("37 fa 21 3d")


def recorded_conversation() -> tuple[bytes, bytes]:
    """Both directions of a short conversation, as a tap would have recorded them."""
    client = ClientConnection("localhost:8888", "/chat", key=KEY, mask_source=lambda: MASK)
    server = ServerConnection()
    upstream = client.data_to_send()
    server.receive_data(upstream)
    server.accept()
    server.send_text("welcome")
    downstream = server.data_to_send()
    client.receive_data(downstream)
    client.send_text("Hello")
    client.ping(b"hb")
    client.close(1000, "bye")
    sent = client.data_to_send()
    upstream += sent
    server.receive_data(sent)
    downstream += server.data_to_send()
    return upstream, downstream


def test_client_stream_is_a_request_then_masked_frames_with_offsets() -> None:
    upstream, _ = recorded_conversation()
    decoded = decode_stream(upstream, "client")
    assert decoded.error is None and decoded.rest == b"" and decoded.switched
    head = decoded.head
    assert isinstance(head, CapturedHead) and isinstance(head.head, HandshakeRequest)
    assert head.start == 0 and upstream[head.end - 4:head.end] == b"\r\n\r\n"
    frames = decoded.frames
    assert [f.frame.opcode for f in frames] == [Opcode.TEXT, Opcode.PING, Opcode.CLOSE]
    assert frames[0].start == head.end
    rfc_masked_hello = bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")
    assert upstream[frames[0].start:frames[0].end] == rfc_masked_hello
    assert all(a.end == b.start for a, b in zip(frames, frames[1:], strict=False))
    assert frames[-1].end == len(upstream)
    assert all(f.problem is None for f in frames)


def test_server_stream_is_a_101_then_unmasked_frames() -> None:
    _, downstream = recorded_conversation()
    decoded = decode_stream(downstream)  # sender told by the first bytes: HTTP/
    assert decoded.sender == "server"
    assert isinstance(decoded.head.head, HandshakeResponse) and decoded.head.head.status == 101
    assert [f.frame for f in decoded.frames] == [
        Frame(Opcode.TEXT, b"welcome"), Frame(Opcode.PONG, b"hb"),
        Frame(Opcode.CLOSE, b"\x03\xe8")]


def test_any_chunking_gives_the_same_items() -> None:
    upstream, _ = recorded_conversation()
    whole = decode_stream(upstream, "client").items()
    decoder = StreamDecoder("client")
    items = []
    for i in range(len(upstream)):
        items += decoder.feed(upstream[i:i + 1])
    assert items == whole


def test_rule_breaks_are_reported_not_raised() -> None:
    request = ClientConnection("h", key=KEY).data_to_send()
    unmasked = Frame(Opcode.TEXT, b"Hello").serialize()
    reserved = Frame(0x3, b"", mask=MASK).serialize()
    decoded = decode_stream(request + unmasked + reserved, "client")
    assert [str(f.problem) for f in decoded.frames] == [
        "a client's frame must be masked (§5.1)", "reserved opcode 0x3 (§5.2)"]
    lenient = decode_stream(request + unmasked, "client", check_masking=False)
    assert lenient.frames[0].problem is None
    assert "breaks RFC 6455" in decoded.frames[0].explain()


def test_incomplete_tail_and_refused_upgrade() -> None:
    upstream, _ = recorded_conversation()
    cut = decode_stream(upstream[:-3], "client")
    assert len(cut.frames) == 2 and cut.error is not None
    assert cut.rest == upstream[cut.frames[-1].end:-3]
    refused = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope"
    decoded = decode_stream(refused, "server")
    assert decoded.switched is False and decoded.frames == [] and decoded.rest == b"nope"
    assert decode_stream(b"").items() == [] and decode_stream(b"").error is None


def test_mid_connection_capture_without_a_head() -> None:
    wire = Frame(Opcode.BINARY, bytes(300)).serialize() + Frame(Opcode.CLOSE).serialize()
    decoded = decode_stream(wire, "server", expect_head=False)
    assert decoded.head is None
    assert [(f.start, f.end) for f in decoded.frames] == [(0, 304), (304, 306)]


def test_explain_lists_every_item_with_its_bytes() -> None:
    upstream, _ = recorded_conversation()
    text = decode_stream(upstream, "client").explain()
    lines = text.splitlines()
    assert lines[0] == "stream sent by the client"
    assert "HTTP head" in lines[2] and "GET /chat HTTP/1.1" in lines[2]
    assert "TEXT (fin, masked) 5 bytes 'Hello'" in text and "code 1000 'bye'" in text
    assert isinstance(decode_stream(upstream, "client").frames[0], CapturedFrame)
    assert "<table>" in decode_stream(upstream, "client")._repr_html_()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from([None, "client", "server"]), st.booleans())
def test_arbitrary_bytes_never_raise(data: bytes, sender: str | None, head: bool) -> None:
    decoded = decode_stream(data, sender, expect_head=head)  # type: ignore[arg-type]
    covered = sum(item.end - item.start for item in decoded.items()) + len(decoded.rest)
    assert covered == len(data)  # every byte is in exactly one item or in the rest


def test_importing_the_codec_imports_no_networking() -> None:
    code = ("import sys, wsdemo.wire; "
            "bad = {'socket', 'asyncio', 'tornado', 'selectors', 'ssl'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_docstring_examples_run() -> None:
    import doctest

    from wsdemo.wire import frames, handshake

    for module in (frames, handshake):
        assert doctest.testmod(module).failed == 0
