"""The exercises (wsdemo.course.prediction/solution): every lesson's prediction cell is a
stub stored unfilled, and its check cell checks the course's answer in its place."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from wsdemo import course

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
STUB = re.compile(r"^(\w+) = \.\.\.  # your prediction", re.MULTILINE)
CHECKED = re.compile(r"course\.prediction\((\w+), \"(\d\d-\d+)\"\)")


def test_an_unfilled_stub_is_checked_with_the_course_answer_and_says_so(capsys):
    assert course.prediction(..., "06-1") == {6, 9, 10}
    assert "no prediction written above" in capsys.readouterr().out


def test_a_filled_prediction_is_the_learners_own(capsys):
    assert course.prediction({1, 2}, "06-1") == {1, 2}
    assert capsys.readouterr().out == ""


def test_a_solution_is_a_copy_and_an_unknown_exercise_is_named():
    course.solution("06-2").append("changed")
    assert course.solution("06-2") == [(1, True), (2, True), (3, True), (4, False), (5, False)]
    with pytest.raises(KeyError, match="no exercise '06-9'; the exercises are 04-1"):
        course.solution("06-9")


def checks_in(path: Path) -> tuple[set[str], dict[str, str]]:
    """(names stubbed as `... # your prediction`, {exercise: name its check passes})."""
    stubs: set[str] = set()
    checked: dict[str, str] = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            stubs.update(STUB.findall(cell.source))
            checked.update({exercise: name for name, exercise in CHECKED.findall(cell.source)})
    return stubs, checked


def test_each_solution_is_checked_in_its_lesson_from_an_unfilled_stub():
    used: dict[str, str] = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        stubs, checked = checks_in(path)
        for exercise, name in checked.items():
            assert exercise.startswith(path.name[:2]), f"{path.name} checks {exercise}"
            assert name in stubs, f"{path.name}: {name} ({exercise}) is not a stored stub"
            used[exercise] = path.name
    assert sorted(used) == sorted(course.SOLUTIONS), "a solution no lesson checks, or none"
