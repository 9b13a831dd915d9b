"""Control specs: what a remote ``set`` may put into an exposed control.

Sans-I/O. A :class:`ControlSpec` describes one control — its kind and its
limits — in the form sent to clients inside a ``snapshot`` (so a page can draw
the control), and checks a value coming from the network *before* anything is
changed: a value of the wrong type is ``bad-value``, one of the right type but
outside the limits is ``out-of-range``. The widget bridge builds a spec from a
real ipywidget; nothing here imports ipywidgets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .protocol import ErrorCode, ProtocolError, is_finite_number

__all__ = ["KINDS", "ControlSpec"]

KINDS = ("int", "float", "bool", "choice", "text", "color")

_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_MAX_TEXT = 4096


@dataclass(frozen=True)
class ControlSpec:
    """One control's kind and limits.

    ``kind`` is one of :data:`KINDS`. ``min``/``max``/``step`` apply to ``int``
    and ``float``; ``options`` (the allowed values) to ``choice``;
    ``max_length`` to ``text``.
    """

    kind: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: tuple[Any, ...] = ()
    labels: tuple[str, ...] = ()
    max_length: int = _MAX_TEXT
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown control kind {self.kind!r}; known: {', '.join(KINDS)}")

    def describe(self) -> dict[str, Any]:
        """The spec as sent in a snapshot's ``controls``."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind in ("int", "float"):
            out.update(min=self.min, max=self.max, step=self.step)
        elif self.kind == "choice":
            out.update(options=list(self.options), labels=list(self.labels))
        elif self.kind == "text":
            out.update(max_length=self.max_length)
        if self.description:
            out["description"] = self.description
        out.update(self.extra)
        return out

    def check(self, target: str, value: Any, id: str | None = None) -> Any:
        """Return ``value`` as the control stores it, or raise :class:`ProtocolError`."""

        def bad(message: str) -> ProtocolError:
            return ProtocolError(ErrorCode.BAD_VALUE, f"{target}: {message}", id)

        def out_of_range(message: str) -> ProtocolError:
            return ProtocolError(ErrorCode.OUT_OF_RANGE, f"{target}: {message}", id)

        if self.kind == "int":
            if isinstance(value, float) and value.is_integer() and is_finite_number(value):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(f"expected an integer, got {_show(value)}")
            self._check_range(value, out_of_range)
            if self.step and (value - (self.min or 0)) % self.step:
                raise out_of_range(f"{value} is not on the step {self.step:g} from {self.min:g}")
            return value
        if self.kind == "float":
            if not is_finite_number(value):
                raise bad(f"expected a finite number, got {_show(value)}")
            value = float(value)
            self._check_range(value, out_of_range)
            if self.step:
                steps = (value - (self.min or 0.0)) / self.step
                if abs(steps - round(steps)) > 1e-6:
                    raise out_of_range(
                        f"{value:g} is not on the step {self.step:g} from {self.min:g}"
                    )
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise bad(f"expected true or false, got {_show(value)}")
            return value
        if self.kind == "choice":
            for option in self.options:
                if type(option) is type(value) and option == value:
                    return option
            allowed = ", ".join(_show(o) for o in self.options)
            if not any(type(o) is type(value) for o in self.options):
                raise bad(f"expected one of {allowed}, got {_show(value)}")
            raise out_of_range(f"{_show(value)} is not one of {allowed}")
        if self.kind == "text":
            if not isinstance(value, str):
                raise bad(f"expected a string, got {_show(value)}")
            if len(value) > self.max_length:
                raise out_of_range(f"longer than {self.max_length} characters")
            return value
        # color
        if not isinstance(value, str):
            raise bad(f"expected a colour like '#1f77b4', got {_show(value)}")
        if not _HEX_COLOR.fullmatch(value):
            raise out_of_range(f"{_show(value)} is not a colour '#rgb' or '#rrggbb'")
        return value.lower()

    def _check_range(self, value: float, out_of_range) -> None:
        if self.min is not None and value < self.min:
            raise out_of_range(f"{value:g} is below the minimum {self.min:g}")
        if self.max is not None and value > self.max:
            raise out_of_range(f"{value:g} is above the maximum {self.max:g}")


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
