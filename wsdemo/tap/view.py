"""Views of a tap capture: a text table, an HTML table, a sequence diagram.

The text forms never show ports or absolute times unless asked (``times=True``),
so a notebook that prints a capture gives the same output on every run.

Sans-I/O, and below :mod:`wsdemo.tap.capture` (which calls these views): what a
view reads of a capture and of its messages is named by the two protocols here.
"""

from __future__ import annotations

import html
from typing import Any, Protocol


class Message(Protocol):
    """What a view reads of one decoded message (:class:`wsdemo.tap.capture.Message`)."""

    index: int
    conn: int
    direction: Any
    t: float
    kind: str
    nbytes: int
    summary: str
    item: Any

    @property
    def frame(self) -> Any: ...

    @property
    def http(self) -> Any: ...


class Capture(Protocol):
    """What a view reads of a capture (:class:`wsdemo.tap.capture.Capture`)."""

    chunks: list[Any]
    connections: dict[int, Any]
    messages: list[Any]

    @property
    def t0(self) -> float: ...

    def nbytes(self, direction: Any = None, conn: int | None = None) -> int: ...

__all__ = ["KIND_COLOURS", "capture_html", "capture_table", "message_colour", "plot_sequence"]

#: colours of the sequence diagram and of the HTML rows (HTTP vs frames)
KIND_COLOURS = {
    "http": "#1f77b4",
    "frame": "#ff7f0e",
    "control": "#d62728",
    "bytes": "#7f7f7f",
    "eof": "#555555",
}
_ROW_BACKGROUND = {
    "http": "#e8f0fa",
    "frame": "#fff1e3",
    "control": "#fde8e8",
    "bytes": "#f0f0f0",
    "eof": "#ffffff",
}


def _style_kind(message: Message) -> str:
    if message.kind == "frame" and message.frame.is_control:
        return "control"
    return message.kind


def message_colour(message: Message) -> str:
    return KIND_COLOURS[_style_kind(message)]


def _clip(text: str, width: int) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def capture_table(capture: Capture, *, times: bool = False, width: int = 72) -> str:
    many = len(capture.connections) > 1
    header = ["  #"]
    if times:
        header.append("      ms")
    if many:
        header.append("conn")
    header += ["direction    ", " bytes", "kind ", "what"]
    lines = [" ".join(header)]
    for m in capture.messages:
        row = [f"{m.index:3d}"]
        if times:
            row.append(f"{(m.t - capture.t0) * 1000:8.1f}")
        if many:
            row.append(f"{m.conn:4d}")
        row += [f"{m.direction.value:13}", f"{m.nbytes:6d}", f"{m.kind:5}", _clip(m.summary, width)]
        lines.append(" ".join(row))
    if not capture.messages:
        lines.append("(nothing captured)")
    return "\n".join(lines)


def _detail(message: Message) -> str:
    item = message.item
    explain = getattr(item, "explain", None)
    if callable(explain):
        return str(explain())
    if isinstance(item, bytes | bytearray):
        return bytes(item[:256]).hex(" ")
    return ""


def capture_html(capture: Capture, *, times: bool = False, limit: int = 300) -> str:
    from .decode import Direction

    up = capture.nbytes(Direction.C2S)
    down = capture.nbytes(Direction.S2C)
    parts = [
        '<div class="wsdemo-capture">',
        (
            f"<p><b>tap capture</b>: {len(capture.connections)} connection(s), "
            f"{len(capture.chunks)} chunks, {len(capture.messages)} messages; "
            f"{up} B client→server, {down} B server→client. "
            f'<span style="background:{_ROW_BACKGROUND["http"]}">HTTP</span> '
            f'<span style="background:{_ROW_BACKGROUND["frame"]}">data frame</span> '
            f'<span style="background:{_ROW_BACKGROUND["control"]}">control frame</span></p>'
        ),
        '<table style="font-family:monospace;font-size:90%;border-collapse:collapse">',
        "<tr><th>#</th>"
        + ("<th>ms</th>" if times else "")
        + "<th>conn</th><th>direction</th><th>bytes</th><th>kind</th>"
        + "<th style='text-align:left'>what (click for detail)</th></tr>",
    ]
    for m in capture.messages[:limit]:
        background = _ROW_BACKGROUND[_style_kind(m)]
        detail = _detail(m)
        what = html.escape(m.summary)
        if detail:
            what = (
                f"<details><summary>{what}</summary>"
                f"<pre style='margin:0'>{html.escape(detail)}</pre></details>"
            )
        parts.append(
            f'<tr style="background:{background};vertical-align:top">'
            f"<td>{m.index}</td>"
            + (f"<td>{(m.t - capture.t0) * 1000:.1f}</td>" if times else "")
            + f"<td>{m.conn}</td>"
            + f"<td>{html.escape(m.direction.value)}</td>"
            + f"<td style='text-align:right'>{m.nbytes}</td>"
            + f"<td>{m.kind}</td><td style='text-align:left'>{what}</td></tr>"
        )
    parts.append("</table>")
    if len(capture.messages) > limit:
        parts.append(f"<p>… {len(capture.messages) - limit} more messages not shown</p>")
    parts.append("</div>")
    return "".join(parts)


def plot_sequence(
    capture: Capture,
    ax: Any = None,
    *,
    y: str = "order",
    max_label: int = 46,
    limit: int = 80,
) -> Any:
    """Two lifelines (client, server), one arrow per message, coloured by kind."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .decode import Direction

    if y not in ("order", "time"):
        raise ValueError("y must be 'order' or 'time'")
    messages = capture.messages[:limit]
    if ax is None:
        height = min(2.0 + 0.32 * len(messages), 24.0)
        _, ax = plt.subplots(figsize=(8.0, height))
    many = len(capture.connections) > 1

    def ypos(i: int, m: Message) -> float:
        return float(i) if y == "order" else (m.t - capture.t0) * 1000

    bottom = max((ypos(i, m) for i, m in enumerate(messages)), default=1.0)
    step = 1.0 if y == "order" else max(bottom / max(len(messages), 1), 1e-3)
    for x, name in ((0.0, "client"), (1.0, "server")):
        ax.plot([x, x], [-step, bottom + step], color="#444", lw=1.2, zorder=1)
        ax.text(x, -step * 1.2, name, ha="center", va="bottom", fontsize=10, weight="bold")
    for i, m in enumerate(messages):
        yy = ypos(i, m)
        colour = message_colour(m)
        start, end = (0.0, 1.0) if m.direction is Direction.C2S else (1.0, 0.0)
        label = _clip(m.summary, max_label)
        if many:
            label = f"[{m.conn}] {label}"
        if m.kind == "eof":
            ax.plot([start], [yy], marker="x", color=colour, ms=8, zorder=3)
            tag = f"FIN [{m.conn}]" if many else "FIN"
            ax.text(start + (0.03 if start == 0 else -0.03), yy, tag,
                    ha="left" if start == 0 else "right", va="center", fontsize=7, color=colour)
            continue
        ax.annotate(
            "",
            xy=(end, yy),
            xytext=(start, yy),
            arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.4},
            zorder=2,
        )
        ax.text(0.5, yy - step * 0.12, f"{label}  ({m.nbytes} B)", ha="center", va="bottom",
                fontsize=7, color=colour)
        if m.kind == "http" and m.http.status == 101:
            ax.axhline(yy + step * 0.5, color=KIND_COLOURS["frame"], ls="--", lw=0.8)
            ax.text(1.02, yy + step * 0.5, "after the 101:\nframes", fontsize=7, va="center",
                    color=KIND_COLOURS["frame"])
    ax.set_xlim(-0.15, 1.25)
    ax.set_ylim(bottom + step, -step * 1.6)
    ax.set_xticks([])
    if y == "order":
        ax.set_yticks([])
    else:
        ax.set_ylabel("ms since the first chunk")
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(y == "time" and side == "left")
    handles = [
        Line2D([0], [0], color=KIND_COLOURS["http"], lw=2, label="HTTP message"),
        Line2D([0], [0], color=KIND_COLOURS["frame"], lw=2, label="data frame"),
        Line2D([0], [0], color=KIND_COLOURS["control"], lw=2, label="control frame"),
    ]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.02 - 0.3 / max(
        len(messages), 1)), ncol=3, fontsize=7, frameon=False)
    if len(capture.messages) > limit:
        ax.set_title(f"first {limit} of {len(capture.messages)} messages", fontsize=8)
    return ax
