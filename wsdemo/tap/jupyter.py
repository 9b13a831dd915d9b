"""Read Jupyter's kernel WebSocket (``/api/kernels/<id>/channels``) in a tap capture.

Sans-I/O. Jupyter Server speaks the kernel messaging protocol over one
WebSocket in one of two encodings, chosen in the handshake:

* no subprotocol (the "legacy" encoding): one JSON object per *text* frame,
  with ``channel``, ``header``, ``parent_header``, ``metadata``, ``content``;
* subprotocol ``v1.kernel.websocket.jupyter.org`` (what JupyterLab asks for):
  one *binary* frame per message — a little-endian 8-byte count ``n``, then
  ``n`` 8-byte offsets, then the channel name, the four JSON parts and any
  binary buffers at those offsets.

Both are the same messages; only the bytes differ. :func:`kernel_message`
reads either from a captured frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..wire.frames import Opcode
from .frames import FrameView

__all__ = ["V1_SUBPROTOCOL", "decode_v1", "encode_v1", "kernel_message", "kernel_summary"]

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"

_PARTS = ("header", "parent_header", "metadata", "content")


def encode_v1(message: dict[str, Any], buffers: Sequence[bytes] = ()) -> bytes:
    """One kernel message (with a ``channel`` key) in the v1 binary encoding."""
    pieces = [message["channel"].encode()]
    pieces += [json.dumps(message.get(part, {})).encode() for part in _PARTS]
    pieces += [bytes(b) for b in buffers]
    count = len(pieces) + 1  # one offset per piece, plus the end
    offsets = [8 * (1 + count)]
    for piece in pieces:
        offsets.append(offsets[-1] + len(piece))
    header = count.to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return header + b"".join(pieces)


def decode_v1(payload: bytes) -> dict[str, Any]:
    """A v1 binary kernel message as a dict (``buffers`` holds the binary parts)."""
    if len(payload) < 8:
        raise ValueError("shorter than the 8-byte offset count")
    count = int.from_bytes(payload[:8], "little")
    if count < 6 or 8 * (1 + count) > len(payload):
        raise ValueError(f"implausible offset count {count}")
    offsets = [int.from_bytes(payload[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    if offsets != sorted(offsets) or offsets[-1] > len(payload):
        raise ValueError("offsets are not increasing within the payload")
    pieces = [payload[offsets[i] : offsets[i + 1]] for i in range(count - 1)]
    message: dict[str, Any] = {"channel": pieces[0].decode()}
    for name, piece in zip(_PARTS, pieces[1:5], strict=True):
        message[name] = json.loads(piece) if piece else {}
    message["buffers"] = pieces[5:]
    return message


def kernel_message(frame: FrameView) -> dict[str, Any] | None:
    """The kernel message a data frame carries, in either encoding; None if it is not one."""
    try:
        if frame.opcode == Opcode.TEXT:
            message = json.loads(frame.payload)
        elif frame.opcode == Opcode.BINARY:
            message = decode_v1(frame.payload)
        else:
            return None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or "header" not in message:
        return None
    return message


def kernel_summary(frame: FrameView) -> str | None:
    """``"shell execute_request"``-style label for a kernel message frame."""
    message = kernel_message(frame)
    if message is None:
        return None
    header = message.get("header") or {}
    return f"{message.get('channel', '?')} {header.get('msg_type', '?')}"
