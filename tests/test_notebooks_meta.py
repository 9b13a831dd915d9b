"""The course's notebook rules (DESIGN §6), checked on every notebook in notebooks/.

nbval checks that a notebook's stored outputs are what its code produces; this
file checks the shape every lesson promises: a numbered kebab-case name, an
opening that says what you will see, a summary, an exercise with a check cell,
no stored error, every cell run, and an index that links to every lesson.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
INDEX = NOTEBOOKS / "00-index.ipynb"
NAME = re.compile(r"\d{2}-[a-z0-9]+(?:-[a-z0-9]+)*\.ipynb")
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)
ASSERT = re.compile(r"^\s*assert\b", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+\.ipynb)\)")
LAST_RESORT_TAGS = {"nbval-ignore-output", "nbval-skip", "raises-exception"}

PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
IDS = [p.name for p in PATHS]


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def headings(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, heading text) of every markdown heading, in order."""
    return [
        (i, m.group(1).strip())
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for m in HEADING.finditer(cell.source)
    ]


def test_there_is_an_index():
    assert INDEX.exists(), "notebooks/00-index.ipynb is missing"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_name_is_numbered_kebab_case(path: Path):
    assert NAME.fullmatch(path.name), f"{path.name}: want NN-kebab-title.ipynb"


def test_numbers_are_unique():
    numbers = [p.name[:2] for p in PATHS]
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not repeated, f"two notebooks share the number(s) {repeated}"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_kernelspec_is_python3(path: Path):
    kernelspec = read(path).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"kernelspec is {kernelspec!r}"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_opens_with_a_title_and_what_you_will_see(path: Path):
    nb = read(path)
    first = nb.cells[0] if nb.cells else None
    assert first is not None and first.cell_type == "markdown", "the first cell must be markdown"
    assert first.source.lstrip().startswith("# "), "the first cell must open with a '# ' title"
    assert "what you will see" in first.source.lower(), "the first cell must say what you will see"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_closes_with_a_summary_and_an_exercise_with_a_check(path: Path):
    nb = read(path)
    found = headings(nb)
    assert any("summary" in text.lower() for _, text in found), "no 'Summary' heading"
    exercise = next((i for i, text in found if "exercise" in text.lower()), None)
    assert exercise is not None, "no 'Exercise' heading"
    checks = [
        cell for cell in nb.cells[exercise + 1:]
        if cell.cell_type == "code" and ASSERT.search(cell.source)
    ]
    assert checks, "no check cell (a code cell with an assert) after the exercise heading"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_stored_with_outputs_and_no_error(path: Path):
    for number, cell in enumerate(read(path).cells):
        if cell.cell_type != "code":
            continue
        # nbval does not compare a cell that was never run: it would check nothing.
        assert cell.execution_count is not None, f"cell {number} was not run"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {number} stores an error: {errors[0].get('ename')}"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_last_resort_tags_are_justified(path: Path):
    for number, cell in enumerate(read(path).cells):
        tags = LAST_RESORT_TAGS & set(cell.metadata.get("tags", []))
        if tags and cell.cell_type == "code":
            assert re.search(r"^\s*#", cell.source, re.MULTILINE), (
                f"cell {number} is tagged {sorted(tags)} without a comment saying why"
            )


def index_links() -> set[str]:
    nb = read(INDEX)
    return {
        link for cell in nb.cells if cell.cell_type == "markdown"
        for link in LINK.findall(cell.source)
    }


@pytest.mark.skipif(not INDEX.exists(), reason="no index notebook")
def test_index_links_to_every_lesson():
    lessons = {p.name for p in PATHS if p != INDEX}
    missing = sorted(lessons - index_links())
    assert not missing, f"the index does not link to {missing}"


@pytest.mark.skipif(not INDEX.exists(), reason="no index notebook")
def test_index_links_resolve():
    dead = sorted(link for link in index_links() if not (NOTEBOOKS / link).exists())
    assert not dead, f"the index links to notebooks that do not exist: {dead}"


# --- what a lesson points at must be there ---------------------------------------------------

ROOT = NOTEBOOKS.parent
REPO_PATH = re.compile(r"\b((?:wsdemo|tests|binder|notebooks)/[\w./-]*\w)")
# A close code named in prose: "close code 4401", "closed with 1013", "**1001**", …
CLOSE_CODE = re.compile(r"(?:close code|closes? with|closed with|code|\bwith)\s+[*`]*(\d{4})\b")
# RFC 6455 §7.4.1 and the IANA registry: the codes a close frame may carry or report.
RFC_CODES = {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
             1014, 1015}


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_file_a_lesson_names_is_in_the_repository(path: Path):
    missing = sorted({m.group(1).rstrip(".") for cell in read(path).cells
                      for m in REPO_PATH.finditer(cell.source)
                      if not (ROOT / m.group(1).rstrip(".")).exists()})
    assert not missing, f"{path.name} names files the repository lacks: {missing}"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_no_lesson_cites_a_document_the_learner_does_not_have(path: Path):
    cited = [cell.source[max(0, m.start() - 30):m.end() + 10]
             for cell in read(path).cells if cell.cell_type == "markdown"
             for m in re.finditer(r"\bDESIGN\b|\bSTYLE\.md\b|\bDEVELOPERS\.md\b", cell.source)]
    assert not cited, f"{path.name} cites a file outside the repository: {cited}"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_close_code_a_lesson_names_exists(path: Path):
    from wsdemo.core.protocol import CloseCode

    known = RFC_CODES | {int(c) for c in CloseCode}
    named = {int(m.group(1)) for cell in read(path).cells if cell.cell_type == "markdown"
             for m in CLOSE_CODE.finditer(cell.source)}
    unknown = sorted(c for c in named if (1000 <= c <= 1015 or 4000 <= c <= 4999)
                     and c not in known)
    assert not unknown, f"{path.name} names close codes nothing defines: {unknown}"


def test_the_close_code_rule_can_fail():
    assert CLOSE_CODE.findall("the server closes with 4999, then closed with **1013**") == [
        "4999", "1013"]
