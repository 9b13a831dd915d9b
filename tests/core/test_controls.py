"""Control specs check a network value before anything changes."""

import pytest

from wsdemo.core.controls import ControlSpec
from wsdemo.core.protocol import ErrorCode, ProtocolError


def code_of(spec, value):
    with pytest.raises(ProtocolError) as info:
        spec.check("t", value, "id1")
    assert info.value.id == "id1"
    return info.value.code


INT = ControlSpec("int", min=0, max=10, step=2)
FLOAT = ControlSpec("float", min=0.0, max=1.0, step=0.05)


@pytest.mark.parametrize(
    ("spec", "value", "code"),
    [
        (INT, "5", ErrorCode.BAD_VALUE),
        (INT, True, ErrorCode.BAD_VALUE),
        (INT, 2.5, ErrorCode.BAD_VALUE),
        (INT, None, ErrorCode.BAD_VALUE),
        (INT, 12, ErrorCode.OUT_OF_RANGE),
        (INT, -2, ErrorCode.OUT_OF_RANGE),
        (INT, 3, ErrorCode.OUT_OF_RANGE),  # off the step
        (FLOAT, "0.5", ErrorCode.BAD_VALUE),
        (FLOAT, 1.5, ErrorCode.OUT_OF_RANGE),
        (FLOAT, 0.33, ErrorCode.OUT_OF_RANGE),
        (ControlSpec("bool"), 1, ErrorCode.BAD_VALUE),
        (ControlSpec("choice", options=("a", "b")), "c", ErrorCode.OUT_OF_RANGE),
        (ControlSpec("choice", options=("a", "b")), 1, ErrorCode.BAD_VALUE),
        (ControlSpec("text", max_length=3), "abcd", ErrorCode.OUT_OF_RANGE),
        (ControlSpec("text"), 5, ErrorCode.BAD_VALUE),
        (ControlSpec("color"), "red", ErrorCode.OUT_OF_RANGE),
        (ControlSpec("color"), 0xFF0000, ErrorCode.BAD_VALUE),
    ],
)
def test_refused_values(spec, value, code):
    assert code_of(spec, value) == code


@pytest.mark.parametrize(
    ("spec", "value", "stored"),
    [
        (INT, 4, 4),
        (INT, 4.0, 4),
        (FLOAT, 0.35, 0.35),
        (FLOAT, 1, 1.0),
        (ControlSpec("bool"), False, False),
        (ControlSpec("choice", options=("a", 2)), 2, 2),
        (ControlSpec("color"), "#ABCDEF", "#abcdef"),
        (ControlSpec("text"), "", ""),
    ],
)
def test_accepted_values(spec, value, stored):
    assert spec.check("t", value) == stored


def test_describe_gives_what_a_page_needs():
    assert INT.describe() == {"kind": "int", "min": 0, "max": 10, "step": 2}
    assert ControlSpec("choice", options=("x",), labels=("X",)).describe() == {
        "kind": "choice", "options": ["x"], "labels": ["X"]}


def test_unknown_kind_refused():
    with pytest.raises(ValueError):
        ControlSpec("slider")
