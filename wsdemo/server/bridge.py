"""The widget bridge: named ipywidgets as controls of a room, both ways.

* A remote ``set`` is checked against the widget as it is *now* (type, min,
  max, step, options — :class:`wsdemo.core.controls.ControlSpec`), put in the log,
  then applied to the widget on the server's loop (the kernel's main thread).
* A change made in the notebook (code, or the slider dragged in JupyterLab)
  becomes one event to every client.
* No echo loop: while the bridge applies a remote value it ignores the change
  notification that the widget sends back, so a remote ``set`` gives exactly
  one event, not two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.controls import ControlSpec
from ..core.protocol import ErrorCode, ProtocolError

__all__ = ["WidgetBridge", "spec_for"]

logger = logging.getLogger("wsdemo.bridge")

_JSON_SCALARS = (str, int, float, bool, type(None))


def _choice_values(widget: Any) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    labels = tuple(widget._options_labels)
    values = tuple(widget._options_values)
    if all(isinstance(v, _JSON_SCALARS) for v in values):
        return values, labels
    # Values that JSON cannot carry travel as their labels.
    return labels, labels


def spec_for(widget: Any) -> ControlSpec:
    """The :class:`ControlSpec` of a supported ipywidget, read from its current traits."""
    import ipywidgets as w

    description = getattr(widget, "description", "") or ""
    if isinstance(widget, (w.IntSlider, w.BoundedIntText)):
        return ControlSpec("int", min=widget.min, max=widget.max, step=widget.step,
                           description=description)
    if isinstance(widget, (w.FloatSlider, w.BoundedFloatText)):
        return ControlSpec("float", min=widget.min, max=widget.max, step=widget.step,
                           description=description)
    if isinstance(widget, (w.ToggleButton, w.Checkbox)):
        return ControlSpec("bool", description=description)
    if isinstance(widget, (w.Dropdown, w.RadioButtons, w.ToggleButtons, w.Select)):
        options, labels = _choice_values(widget)
        return ControlSpec("choice", options=options, labels=labels, description=description)
    if isinstance(widget, w.ColorPicker):
        return ControlSpec("color", description=description)
    if isinstance(widget, (w.Text, w.Textarea)):
        return ControlSpec("text", description=description)
    supported = ("IntSlider, BoundedIntText, FloatSlider, BoundedFloatText, ToggleButton, "
                 "Checkbox, Dropdown, RadioButtons, ToggleButtons, Select, Text, Textarea, "
                 "ColorPicker")
    raise TypeError(f"cannot expose a {type(widget).__name__}; supported: {supported}")


def _to_json(widget: Any, spec: ControlSpec, value: Any) -> Any:
    if spec.kind == "choice" and spec.options == spec.labels and value is not None:
        values = tuple(widget._options_values)
        if value in values:
            return spec.labels[values.index(value)]
    if spec.kind == "color" and isinstance(value, str) and not value.startswith("#"):
        from matplotlib.colors import to_hex  # a CSS name, as a notebook may set it

        try:
            return to_hex(value)
        except ValueError:
            return value
    return value


def _from_json(widget: Any, spec: ControlSpec, value: Any) -> Any:
    if spec.kind == "choice" and spec.options == spec.labels:
        return widget._options_values[spec.labels.index(value)]
    return value


class WidgetBridge:
    """The controls of one room. Made by :meth:`ControlServer.expose`.

    ``submit(target, value)`` hands a change made in the kernel to the server (an
    awaitable that logs and broadcasts it, or ``None`` once the server is stopped);
    ``call_soon`` runs a callback on the server's loop from any thread.
    """

    def __init__(self, room: str, *,
                 submit: Callable[[str, Any], Awaitable[Any] | None],
                 call_soon: Callable[..., None]):
        self._submit = submit
        self._call_soon = call_soon
        self.room = room
        self._widgets: dict[str, Any] = {}
        self._observers: dict[str, Any] = {}
        self._applying: set[str] = set()
        self._pending: set[asyncio.Task] = set()

    def expose(self, target: str, widget: Any) -> None:
        spec_for(widget)  # refuse an unsupported widget before touching anything
        old = self._widgets.get(target)
        if old is widget:
            return  # a re-run cell: already observed once, not twice
        if old is not None:
            old.unobserve(self._observers.pop(target), names="value")

        def on_change(change: dict[str, Any], target: str = target) -> None:
            self._widget_changed(target, change["new"])

        widget.observe(on_change, names="value")
        self._widgets[target] = widget
        self._observers[target] = on_change

    def close(self) -> None:
        for target, widget in self._widgets.items():
            widget.unobserve(self._observers[target], names="value")
        self._widgets.clear()
        self._observers.clear()

    @property
    def targets(self) -> list[str]:
        return list(self._widgets)

    def widget(self, target: str) -> Any:
        return self._widgets[target]

    def controls(self) -> dict[str, Any]:
        return {t: spec_for(w).describe() for t, w in self._widgets.items()}

    def state(self) -> dict[str, Any]:
        return {t: _to_json(w, spec_for(w), w.value) for t, w in self._widgets.items()}

    def check(self, target: str, value: Any, id: str | None = None) -> Any:
        widget = self._widgets.get(target)
        if widget is None:
            known = ", ".join(self._widgets) or "none"
            raise ProtocolError(
                ErrorCode.UNKNOWN_TARGET,
                f"room {self.room!r} has no control {target!r}; controls: {known}",
                id,
            )
        return spec_for(widget).check(target, value, id)

    def apply(self, target: str, value: Any) -> None:
        """Set a checked remote value on the widget, without echoing it back as a new event."""
        widget = self._widgets[target]
        self._applying.add(target)
        try:
            widget.value = _from_json(widget, spec_for(widget), value)
        finally:
            self._applying.discard(target)

    def _widget_changed(self, target: str, new: Any) -> None:
        if target in self._applying:
            return
        widget = self._widgets.get(target)
        if widget is None:
            return
        value = _to_json(widget, spec_for(widget), new)
        self._call_soon(self._record, target, value)

    def _record(self, target: str, value: Any) -> None:
        submitted = self._submit(target, value)
        if submitted is None:  # the server is stopped
            return
        task = asyncio.ensure_future(submitted)
        self._pending.add(task)
        task.add_done_callback(self._recorded)

    def _recorded(self, task: asyncio.Task) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a notebook change was not recorded: %s", task.exception())
