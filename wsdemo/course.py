"""Regenerate the course notebooks' stored outputs (``python -m wsdemo notebooks``).

Each notebook is executed top to bottom in a fresh kernel with its own folder as
the working directory — as JupyterLab and nbval run it — and written back with
its outputs. This is the only way outputs get into the repository: never by hand.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["execute_notebook", "execute_notebooks"]


def execute_notebook(path: Path, timeout: int = 600, kernel_name: str = "python3") -> None:
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        record_timing=False,  # timestamps would change every stored cell on every run
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    for cell in nb.cells:  # timings stored by an earlier run of another tool
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, path)


def execute_notebooks(paths: list[Path], timeout: int = 600) -> list[Path]:
    """Execute each notebook in place; returns the ones that failed."""
    failed = []
    for path in paths:
        started = time.monotonic()
        print(f"executing {path} ...", end=" ", flush=True)
        try:
            execute_notebook(Path(path), timeout=timeout)
        except Exception as exc:  # report every notebook, then fail
            failed.append(path)
            first = str(exc).strip().splitlines()
            print(f"FAILED: {first[-1] if first else type(exc).__name__}", flush=True)
            continue
        print(f"ok ({time.monotonic() - started:.1f} s)", flush=True)
    if failed:
        print(f"{len(failed)} notebook(s) failed", file=sys.stderr)
    return failed
