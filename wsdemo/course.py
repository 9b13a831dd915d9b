"""Regenerate the course notebooks' stored outputs (``python -m wsdemo notebooks``).

Each notebook is executed top to bottom in a fresh kernel with its own folder as
the working directory — as JupyterLab and nbval run it — and written back with
its outputs. This is the only way outputs get into the repository: never by hand.

The exercises' solutions live here too (:func:`solution`, :func:`prediction`): a lesson's
prediction cell is a stub the learner fills in, and where it is left as ``...`` the
check cell checks the course's own solution instead — so the stored notebook, run by
nbval, still checks every exercise against what the experiment really did.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["execute_notebook", "execute_notebooks", "prediction", "solution"]


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


# --- exercises ----------------------------------------------------------------------------

# "NN-k": exercise k of lesson NN. Each value is what the learner is asked to predict;
# the check cell compares it with what the experiment observed, never with a formula.
SOLUTIONS: dict[str, Any] = {
    # 04: the drop moved to message 30, back after 40: 31-40 never reach the bare reader.
    "04-1": list(range(31, 41)),
    # 04: resume off: the client holds seq 20, the next event it sees is seq 36.
    "04-2": (20, 36),
    # 04: a file instead of memory repairs only what a restart broke.
    "04-3": {"message persistence"},
    # 06: the log holds 7-10; a replay from `after` needs after+1 held, and after <= 10.
    "06-1": {6, 9, 10},
    # 06: x1-x3 were committed before the kill (their ids too); x4, x5 are new.
    "06-2": [(1, True), (2, True), (3, True), (4, False), (5, False)],
    # 07: one of bob's two tabs drops: a count, not a departure.
    "07-1": (1, []),
    # 07: the retry through A finds the id in Redis: bob's first seq, a duplicate.
    "07-2": (4, True),
    # 07: one log gives one order, but only resume gets back what was missed.
    "07-3": {"room membership": True, "multi-server routing": True,
             "ordering after reconnect": False},
    # 01: the head of §3 is 158 bytes (its Host line holds a 5-digit port, as every
    # ephemeral port has) and the added line is 30 with its CR LF; the frame starts at
    # the byte after the head's empty line.
    "01-3": 158 + len("User-Agent: wsdemo-lesson-01\r\n"),
    # 02: a server's frame has no mask; a payload under 126 bytes fits the 7-bit length
    # (2-byte header), up to 65535 takes 2 more length bytes (126), beyond that 8 (127):
    # RFC 6455 §5.2.
    "02-2": (2, 4, 10),
    # 03: the event log keeps each room's ids; a set whose id it already holds gets the
    # original event's seq back, marked duplicate, and is not logged, applied or sent again.
    "03-3": (True, 1),
}


def solution(exercise: str) -> Any:
    """The course's answer to ``exercise`` ("06-2": lesson 06, exercise 2), a fresh copy."""
    if exercise not in SOLUTIONS:
        raise KeyError(f"no exercise {exercise!r}; the exercises are {', '.join(SOLUTIONS)}")
    return copy.deepcopy(SOLUTIONS[exercise])


def prediction(value: Any, exercise: str) -> Any:
    """The learner's prediction for ``exercise``, or, where they left the stub's ``...``,
    the course's solution (and a line saying so): the check cell runs either way."""
    if value is Ellipsis:
        print(f"(no prediction written above: checking the course's answer to {exercise})")
        return solution(exercise)
    return value
