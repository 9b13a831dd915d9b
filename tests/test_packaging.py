"""One list of what wsdemo needs: pyproject.toml declares it, requirements.txt and
binder/ install it from there, and `pip install -e '.[course]'` is all a course needs."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def install_lines(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def test_requirements_install_the_project_with_every_extra_and_nothing_else():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert install_lines(ROOT / "requirements.txt") == [f"-e .[{','.join(extras)}]"]


def test_binder_installs_the_same_requirements():
    assert install_lines(ROOT / "binder" / "requirements.txt") == ["-r ../requirements.txt"]


def test_the_course_extra_brings_jupyterlab_and_a_safe_proxy():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    course = project["optional-dependencies"]["course"]
    assert any(r.startswith("jupyterlab") for r in course)
    assert "jupyter-server-proxy>=4.1.1" in course, "GHSA-w3vc-fx9p-wp4v is fixed in 4.1.1"
    # What is installed here was installed from this pyproject.toml (pip install -e).
    installed = importlib.metadata.requires("wsdemo") or []
    assert any(r.startswith("jupyterlab") and 'extra == "course"' in r for r in installed)
    for name in ("tornado", "ipywidgets", "pyjwt"):
        assert any(r.lower().startswith(name) and "extra" not in r for r in installed), name
