"""One list of what wsdemo needs: pyproject.toml declares it, requirements.txt and
binder/ install it from there, and `pip install -e '.[course]'` is all a course needs."""

from __future__ import annotations

import importlib.metadata
import json
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


def test_a_fresh_venv_with_the_course_extra_starts_the_course_with_an_empty_path(tmp_path):
    """What the index notebook says, typed on a fresh machine: pip install -e '.[course]'
    in a new virtual environment, then python -m wsdemo course, with no PATH at all."""
    import secrets
    import shutil
    import subprocess
    import sys
    import tempfile
    import urllib.request

    from tests.support.jupyter import JupyterProcess, loopback_args, private_dirs

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-e",
                          f"{ROOT}[course]"], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    (ROOT / "build").mkdir(exist_ok=True)
    copy = Path(tempfile.mkdtemp(dir=ROOT / "build", prefix="test-fresh-course-"))
    token = secrets.token_hex(8)
    env = {"HOME": str(tmp_path), "PATH": "", "LANG": "C.UTF-8",
           "WSDEMO_COURSE_COPY": str(copy), **private_dirs(tmp_path)}
    lab = JupyterProcess([str(venv / "bin" / "python"), "-m", "wsdemo", "course",
                          *loopback_args(token)], env=env, cwd=ROOT, name="fresh course")
    try:
        origin = lab.wait_listening(90)
        url = f"{origin}/api/contents/build/{copy.name}/00-index.ipynb?content=0&token={token}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert json.loads(reply.read())["type"] == "notebook", lab.tail()
    finally:
        lab.stop(20)
        shutil.rmtree(copy, ignore_errors=True)
