"""The bytes of nine Autobahn|Testsuite cases, as its fuzzing peer sends them.

Source: crossbario/autobahn-testsuite, ``autobahntestsuite/case/case3_2.py`` …
``case6_4_4.py``. Each case is a list of *chops*: the pieces the peer writes
separately (``sync=True``, ``continueLater``, ``sendMessageFrameData``); a
chop boundary may fall inside a frame. Autobahn sets the reserved bits as
``(rsv % 8) << 4`` of the first byte, so ``rsv=2`` is RSV2 and ``rsv=3`` is
RSV2 + RSV3.

For every case the strict outcome ("OK" in Autobahn, as opposed to
"NON-STRICT") is: the messages listed in ``echoed`` are delivered — an echo
peer sends them back — *before* the connection fails with ``code``, and the
failure comes with chop number ``fails_at`` (0-based), not later: for 6.4.3
and 6.4.4 that is the middle of a frame whose end has not arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsdemo.wire import Frame, Opcode

HELLO = b"Hello, world!"
# Case 6.4.1's parts: "κόσμε", then 0x110000 written as UTF-8 would write it
# (out of Unicode's range, RFC 3629 §3), then "edited".
PART1 = bytes.fromhex("ce ba e1 bd b9 cf 83 ce bc ce b5")
PART2 = bytes.fromhex("f4 90 80 80")
PART3 = b"edited"
PAYLOAD = PART1 + PART2 + PART3


@dataclass(frozen=True)
class Case:
    name: str
    chops: tuple[bytes, ...]
    echoed: tuple[str, ...]
    code: int
    fails_at: int


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          mask: bytes | None = None) -> bytes:
    return Frame(opcode, payload, fin=fin, rsv1=bool(rsv & 4), rsv2=bool(rsv & 2),
                 rsv3=bool(rsv & 1), mask=mask).serialize()


def one_frame_in_chops(payload: bytes, cuts: tuple[int, ...], mask: bytes | None) -> tuple[
        bytes, ...]:
    """A single FIN text frame of ``payload``, written in pieces cut at ``cuts``
    (offsets into the payload): ``beginMessageFrame`` + ``sendMessageFrameData``."""
    wire = frame(Opcode.TEXT, payload, mask=mask)
    header = len(wire) - len(payload)
    bounds = [0, *(header + cut for cut in cuts), len(wire)]
    return tuple(wire[a:b] for a, b in zip(bounds, bounds[1:], strict=False))


NAMES = ("3.2", "3.3", "4.1.3", "4.1.4", "4.2.3", "4.2.4", "5.15", "6.4.3", "6.4.4")


def cases(mask: bytes | None) -> list[Case]:
    """The nine cases; ``mask``: the client's masking key (None: a server sends them)."""
    def f(opcode: int, payload: bytes = b"", **options: object) -> bytes:
        return frame(opcode, payload, mask=mask, **options)  # type: ignore[arg-type]

    def hello_then(bad: bytes) -> tuple[bytes, ...]:
        """A message, the bad frame, a Ping: written together (no ``sync``)."""
        return (f(Opcode.TEXT, HELLO) + bad + f(Opcode.PING),)

    return [
        Case("3.2 RSV=2 after a message", hello_then(f(Opcode.TEXT, HELLO, rsv=2)),
             ("Hello, world!",), 1002, 0),
        Case("3.3 RSV=3, frame-wise chops",
             (f(Opcode.TEXT, HELLO), f(Opcode.TEXT, HELLO, rsv=3), f(Opcode.PING)),
             ("Hello, world!",), 1002, 1),
        Case("4.1.3 opcode 5 after a message", hello_then(f(5)), ("Hello, world!",), 1002, 0),
        Case("4.1.4 opcode 6 with payload", hello_then(f(6, HELLO)),
             ("Hello, world!",), 1002, 0),
        Case("4.2.3 control opcode 13", hello_then(f(13)), ("Hello, world!",), 1002, 0),
        Case("4.2.4 control opcode 14 with payload", hello_then(f(14, HELLO)),
             ("Hello, world!",), 1002, 0),
        Case("5.15 continuation with nothing to continue",
             (f(Opcode.TEXT, b"fragment1", fin=False) + f(Opcode.CONT, b"fragment2")
              + f(Opcode.CONT, b"fragment3", fin=False) + f(Opcode.TEXT, b"fragment4"),),
             ("fragment1fragment2",), 1002, 0),
        Case("6.4.3 invalid UTF-8 in the 2nd chop of one frame",
             one_frame_in_chops(PAYLOAD, (len(PART1), len(PART1) + len(PART2)), mask),
             (), 1007, 1),
        Case("6.4.4 the one octet making it invalid, alone in a chop",
             one_frame_in_chops(PAYLOAD, (12, 13), mask), (), 1007, 1),
    ]
