"""Notebook cells that need an optional tool, marked by a cell tag (a pytest plugin).

A lesson cell tagged ``needs-redis`` runs only where ``redis-server`` is installed. Under
nbval (``-p tests.support.notebook_tags`` in pyproject.toml's addopts) such a cell is
skipped with a one-line reason where the tool is missing — and fails instead where
``WSDEMO_REQUIRE`` names it, the same rule as the tests' (``tests/conftest.py``: ``need``).
A skipped cell is not compared, so its stored output (from a run with the tool) stays;
the other cells run as usual and must not depend on whether it ran.

In JupyterLab the tag does nothing: there the cell itself meets the missing tool, and the
lesson's helpers (``wsdemo.lab.lesson.need``) say so in one line.
"""

from __future__ import annotations

import shutil

import pytest

# tag -> (the WSDEMO_REQUIRE kind, the program, how to install it)
TOOLS = {
    "needs-redis": ("redis", "redis-server", "apt-get install redis-server"),
}


def cell_tags(item: pytest.Item) -> list[str]:
    """The tags of the notebook cell an nbval item runs ([] for any other test)."""
    cell = getattr(item, "cell", None)
    if cell is None or not hasattr(item, "cell_num"):
        return []
    tags = cell.get("metadata", {}).get("tags", [])
    return tags if isinstance(tags, list) else []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    from tests.conftest import need  # the one skip-or-fail rule (imported late: a conftest)

    for tag in cell_tags(item):
        if tag in TOOLS:
            kind, program, install = TOOLS[tag]
            need(kind, shutil.which(program) is not None,
                 f"{program} not installed ({install}): cell tagged {tag}")
