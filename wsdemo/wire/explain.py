"""Annotated views of decoded items: one row per field, as text or as HTML.

Every decoded item of the codec (a frame, a handshake request or response)
can list its fields — where they sit in the bytes, which bits, the value and
what it means — so a notebook can show a frame byte by byte.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Field", "hex_bytes", "render_html", "render_text"]

# Long payloads are shown by their start only: a table row is for reading.
HEX_PREVIEW = 12


@dataclass(frozen=True)
class Field:
    """One annotated field: position in the bytes, bit pattern, name, value, meaning."""

    where: str
    bits: str
    name: str
    value: str
    meaning: str = ""


def hex_bytes(data: bytes, limit: int = HEX_PREVIEW) -> str:
    """``data`` as spaced hex, cut after ``limit`` bytes with a count of the rest."""
    shown = data[:limit].hex(" ")
    if len(data) > limit:
        shown += f" … (+{len(data) - limit} bytes)"
    return shown or "(empty)"


def _columns(fields: Sequence[Field]) -> list[tuple[str, str]]:
    columns = [("where", "bytes"), ("bits", "bits"), ("name", "field"), ("value", "value"),
               ("meaning", "meaning")]
    # A handshake has no bit-level fields: drop the empty column rather than show it.
    return [(attr, title) for attr, title in columns
            if attr in ("where", "name", "value") or any(getattr(f, attr) for f in fields)]


def render_text(title: str, fields: Sequence[Field], where_title: str = "bytes") -> str:
    """A plain-text table, stable across runs (notebook outputs are compared)."""
    columns = [(attr, where_title if attr == "where" else header)
               for attr, header in _columns(fields)]
    rows = [[header for _, header in columns]]
    rows += [[getattr(field, attr) for attr, _ in columns] for field in fields]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [title] if title else []
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render_html(title: str, fields: Sequence[Field], where_title: str = "bytes") -> str:
    """The same table as HTML, for ``_repr_html_`` in Jupyter."""
    columns = [(attr, where_title if attr == "where" else header)
               for attr, header in _columns(fields)]
    esc = html.escape
    head = "".join(f"<th>{esc(header)}</th>" for _, header in columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td><code>{esc(getattr(field, attr))}</code></td>"
            if attr in ("bits", "value") else f"<td>{esc(getattr(field, attr))}</td>"
            for attr, _ in columns
        ) + "</tr>"
        for field in fields
    )
    caption = f"<caption>{esc(title)}</caption>" if title else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
