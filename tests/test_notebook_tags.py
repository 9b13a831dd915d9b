"""Notebook cells tagged ``needs-redis`` (tests/support/notebook_tags.py): skipped with a
one-line reason under nbval where redis-server is missing, failed where
``WSDEMO_REQUIRE=redis``, run (and compared) where it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    plain = nbformat.v4.new_code_cell("print('runs anywhere')", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="runs anywhere\n")])
    tagged = nbformat.v4.new_code_cell(
        "import shutil\nprint(shutil.which('redis-server') is not None)", execution_count=2,
        outputs=[nbformat.v4.new_output("stream", name="stdout", text="True\n")])
    tagged.metadata["tags"] = ["needs-redis"]
    nb.cells = [plain, tagged]
    path = folder / "tagged.ipynb"
    nbformat.write(nb, path)
    return path


def nbval(path: Path, *, path_env: str, require: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path_env, "WSDEMO_REQUIRE": require}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
         str(ROOT), "-rsf", "-p", "no:randomly", str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def without_redis() -> str:
    """A PATH with this Python's folder and nothing that holds redis-server."""
    folder = str(Path(sys.executable).parent)
    assert shutil.which("redis-server", path=folder) is None
    return folder


def test_a_tagged_cell_is_skipped_with_a_reason_where_redis_is_missing(tmp_path):
    run = nbval(notebook(tmp_path), path_env=without_redis())
    assert run.returncode == 0, run.stdout[-3000:]
    assert "1 passed, 1 skipped" in run.stdout, run.stdout[-3000:]
    assert "redis-server not installed (apt-get install redis-server): cell tagged needs-redis" \
        in run.stdout


def test_a_tagged_cell_fails_where_redis_is_required_but_missing(tmp_path):
    run = nbval(notebook(tmp_path), path_env=without_redis(), require="browser,redis")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "1 passed, 1 error" in run.stdout, run.stdout[-3000:]  # failed in setup
    assert "WSDEMO_REQUIRE=browser,redis says it must run" in run.stdout


def test_a_tagged_cell_runs_and_is_compared_where_redis_is_installed(tmp_path):
    found = shutil.which("redis-server")
    if found is None:
        from tests.conftest import need

        need("redis", False, "redis-server not installed (apt-get install redis-server)")
    path_env = os.pathsep.join([str(Path(sys.executable).parent), str(Path(found).parent)])
    run = nbval(notebook(tmp_path), path_env=path_env, require="redis")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "2 passed" in run.stdout, run.stdout[-3000:]
