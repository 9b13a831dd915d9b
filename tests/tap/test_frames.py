"""The tap's frame views: RSV1 and permessage-deflate (RFC 7692) as a bystander reads them."""

from __future__ import annotations

import zlib

from wsdemo.tap.frames import Deflate, FrameReader
from wsdemo.wire import Frame, Opcode

MASK = bytes.fromhex("37 fa 21 3d")


def deflate(text: bytes) -> bytes:
    """One message compressed as RFC 7692 §7.2.1 says: raw DEFLATE, sync flush, tail cut."""
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def test_a_compressed_fragmented_message_is_shown_as_such_and_inflated() -> None:
    text = b"a message worth compressing, worth compressing, worth compressing"
    body = deflate(text)
    wire = (Frame(Opcode.TEXT, body[:10], fin=False, rsv1=True, mask=MASK).serialize()
            + Frame(Opcode.CONT, body[10:], mask=MASK).serialize())
    reader = FrameReader(from_client=True, deflate=Deflate())
    first, last = reader.receive(wire)
    assert first.compressed and last.compressed
    assert first.problem is None and last.problem is None
    assert "RSV1: compressed (permessage-deflate)" in first.summary()
    assert "RSV1" not in last.summary() and f"{len(body) - 10} B → {len(text)} B" in last.summary()
    assert last.payload == text and first.inflated is None
    assert "RSV1: compressed (permessage-deflate, RFC 7692 §6)" in first.explain()
    assert "continuation of a compressed message" in last.explain()
    assert "DEFLATE data" in last.explain()


def test_rsv1_without_the_extension_is_a_protocol_error_not_compression() -> None:
    wire = Frame(Opcode.TEXT, deflate(b"hello"), rsv1=True).serialize()
    [view] = FrameReader(from_client=False).receive(wire)
    assert not view.compressed and view.inflated is None
    assert view.problem is not None and "reserved bit" in view.problem
    assert "set without an extension: protocol error" in view.explain()
    assert "compressed" not in view.summary()


def test_an_uncompressed_message_on_a_deflate_connection_is_plain() -> None:
    # RFC 7692 §6: a sender may leave any message uncompressed (RSV1 = 0).
    [view] = FrameReader(from_client=False, deflate=Deflate()).receive(
        Frame(Opcode.TEXT, b"plain").serialize())
    assert not view.compressed and view.text == "plain" and view.problem is None
    assert "no extension: must be 0" in view.explain()
