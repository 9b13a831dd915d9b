"""Lesson 02's sequence diagrams, drawn against time: who spoke when, and who waited.

:func:`plot_conversations` draws one panel per capture, side by side, on one
time axis (milliseconds since each capture began). Each message is an arrow at
the moment its last byte reached the tap; a bar on the server's lifeline spans
each HTTP request from its arrival to the end of its answer (the time the
server *held* the question: a long poll's wait, an SSE stream's whole life);
a star marks each update as it was published. An event-stream response,
which the tap cannot split into messages while it is still running, is read
event by event (:func:`wsdemo.lab.sse.read_event_stream`).

No sockets: it reads captures and a feed's updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..tap.decode import Direction
from ..tap.view import KIND_COLOURS, message_colour
from .sse import read_event_stream

if TYPE_CHECKING:
    from ..tap.capture import Capture

__all__ = ["Arrow", "conversation", "plot_conversations"]

_EVENT_COLOUR = "#9467bd"


@dataclass(frozen=True)
class Arrow:
    """One message of a conversation: when (ms), which way, what, how many bytes."""

    ms: float
    direction: Direction
    label: str
    nbytes: int
    colour: str


def _is_event_stream(capture: Capture, conn: int) -> bool:
    try:
        read_event_stream(capture, conn)
    except ValueError:
        return False
    return True


def conversation(capture: Capture) -> tuple[list[Arrow], list[tuple[float, float]]]:
    """The capture's arrows, and the (start, end) ms of every request the server held."""
    t0 = capture.t0
    arrows: list[Arrow] = []
    held: list[tuple[float, float]] = []
    for conn in capture.connections:
        if _is_event_stream(capture, conn):
            view = read_event_stream(capture, conn)
            for m in capture.messages:  # exchanges that came before the stream, if any
                if m.conn == conn and m.kind == "http" and m.item is not view.request:
                    arrows.append(Arrow((m.t - t0) * 1000, m.direction, m.http.start_line,
                                        m.nbytes, message_colour(m)))
            arrows.append(Arrow((view.request_t - t0) * 1000, Direction.C2S,
                                view.request.start_line, len(view.request.raw),
                                KIND_COLOURS["http"]))
            arrows.append(Arrow((view.head_t - t0) * 1000, Direction.S2C,
                                f"{view.status_line}, {view.header('content-type')}",
                                view.head_nbytes, KIND_COLOURS["http"]))
            for e in view.events:
                label = (f"id: {e.event.last_event_id}  data: {{…}}" if e.event is not None
                         else e.text.replace("\n", " | "))
                arrows.append(Arrow((e.t - t0) * 1000, Direction.S2C, label, e.nbytes,
                                    _EVENT_COLOUR))
            # held until the stream's last bytes (or its end, if it was cut)
            ends = [c.t for c in capture.chunks
                    if c.conn == conn and c.direction is Direction.S2C and not c.eof]
            held.append(((view.request_t - t0) * 1000, (max(ends) - t0) * 1000))
            arrows += _fins(capture, conn)
            continue
        asked: list[float] = []
        arrows += _fins(capture, conn)
        for m in capture.messages:
            if m.conn != conn or m.kind == "eof":
                continue
            label = m.summary if m.kind != "http" else m.http.start_line
            arrows.append(Arrow((m.t - t0) * 1000, m.direction, label, m.nbytes,
                                message_colour(m)))
            if m.kind == "http" and m.http.is_request:
                asked.append((m.t - t0) * 1000)
            elif m.kind == "http" and asked:
                held.append((asked.pop(0), (m.t - t0) * 1000))
    arrows.sort(key=lambda a: a.ms)
    return arrows, held


def _fins(capture: Capture, conn: int) -> list[Arrow]:
    """A FIN mark where each side of ``conn`` ended (drawn as a cross, not an arrow)."""
    return [Arrow((m.t - capture.t0) * 1000, m.direction, "FIN", 0, KIND_COLOURS["eof"])
            for m in capture.messages if m.conn == conn and m.kind == "eof"]


def _spread(wanted: list[float], gap: float) -> list[float]:
    """Label positions: each at its wanted place, or just below the one before."""
    out: list[float] = []
    for y in wanted:
        out.append(max(y, out[-1] + gap) if out else y)
    return out


def plot_conversations(panels: Sequence[tuple[str, Capture]],
                       published: Iterable[Any] = (), *, axes: Any = None,
                       max_label: int = 38) -> Any:
    """One time-axis sequence diagram per ``(title, capture)``; returns the axes.

    ``published`` is the feed's updates (``feed.updates``): each one published
    while a capture ran is starred on that panel's server lifeline.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 7.5), sharey=True)
    updates = list(published)
    data = [(title, capture, *conversation(capture)) for title, capture in panels]
    # The time scale is the conversations'; a FIN from closing the clients much later
    # (after other cells ran) would only stretch it, so FINs past it are left out.
    span = max((a.ms for _, _, arrows, _ in data for a in arrows if a.label != "FIN"),
               default=1.0)
    span = max(span, max((end for *_, held in data for _, end in held), default=0.0))
    top, bottom = -0.04 * span, span * 1.06
    height_pt = axes[0].get_window_extent().height * 72 / axes[0].figure.dpi
    gap = (bottom - top) * 9.0 / max(height_pt, 1.0)  # one 7-pt label line, in ms
    for ax, (title, capture, arrows, held) in zip(axes, data, strict=True):
        for x, name in ((0.0, "client"), (1.0, "server")):
            ax.plot([x, x], [top, bottom], color="#444", lw=1.2, zorder=1)
            ax.text(x, top, name, ha="center", va="bottom", fontsize=9, weight="bold")
        for start, end in held:
            ax.plot([1.0, 1.0], [start, end], color="#2ca02c", lw=6, alpha=0.35,
                    solid_capstyle="butt", zorder=1)
        fins = [a for a in arrows if a.label == "FIN" and not a.nbytes]
        for a in fins:
            if a.ms > span:
                continue
            ax.plot([0.0 if a.direction is Direction.C2S else 1.0], [a.ms], marker="x",
                    color=a.colour, ms=7, zorder=3)
        arrows = [a for a in arrows if a not in fins]
        labels = _spread([a.ms for a in arrows], gap)
        for a, y in zip(arrows, labels, strict=True):
            start, end = (0.0, 1.0) if a.direction is Direction.C2S else (1.0, 0.0)
            ax.annotate("", xy=(end, a.ms), xytext=(start, a.ms),
                        arrowprops={"arrowstyle": "->", "color": a.colour, "lw": 1.2}, zorder=2)
            text = a.label if len(a.label) <= max_label else a.label[:max_label - 1] + "…"
            ax.text(0.5, y, f"{text} ({a.nbytes} B)", ha="center", va="bottom", fontsize=6.5,
                    color=a.colour)
        t0 = capture.t0
        last = max((a.ms for a in arrows), default=0.0)
        stars = [(u.seq, (u.t - t0) * 1000) for u in updates if 0 <= (u.t - t0) * 1000 <= last]
        if stars:
            ax.plot([1.0] * len(stars), [ms for _, ms in stars], "*", color="#d62728", ms=9,
                    zorder=4)
            for (seq, _), y in zip(stars, _spread([ms for _, ms in stars], gap), strict=True):
                ax.text(1.06, y, f"update {seq}", va="center", fontsize=7, color="#d62728")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(-0.12, 1.42)
        ax.set_xticks([])
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
    axes[0].set_ylim(bottom, top * 2.2)
    axes[0].set_ylabel("ms since the capture began (time runs down)")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([0], [0], color=KIND_COLOURS["http"], lw=2, label="HTTP message"),
        Line2D([0], [0], color=_EVENT_COLOUR, lw=2, label="SSE event"),
        Line2D([0], [0], color=KIND_COLOURS["frame"], lw=2, label="WebSocket frame"),
        Line2D([0], [0], color="#2ca02c", lw=6, alpha=0.35, label="server holds a request"),
        Line2D([0], [0], marker="*", color="#d62728", ls="", ms=9, label="update published"),
        Line2D([0], [0], marker="x", color=KIND_COLOURS["eof"], ls="", ms=7,
               label="end of a direction (FIN)"),
    ]
    axes[0].figure.legend(handles=handles, loc="lower center", ncol=6, fontsize=8,
                          frameon=False)
    axes[0].figure.tight_layout(rect=(0, 0.04, 1, 1))
    return axes
