"""A Jupyter server as a subprocess, for the tests that need the real one.

Used by the proxy, JupyterLab and Binder tests. Plain threads (not asyncio), so
that one server can serve every test of a module, each of which runs in its own
event loop. The output is read to the end by a thread: a full pipe would stall
the server's logging, and the last lines explain a failure.
"""

from __future__ import annotations

import json
import queue
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

ORIGIN = re.compile(r"(http://127\.0\.0\.1:\d+)/")


def loopback_args(token: str) -> list[str]:
    """Jupyter's options to listen on a free loopback port, with ``token``, no browser."""
    return ["--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]


def private_dirs(folder: Path) -> dict[str, str]:
    """Jupyter's config, runtime and data dirs under ``folder``: none of the machine's
    (its user config, cookie secret or runtime files)."""
    return {"JUPYTER_CONFIG_DIR": str(folder / "config"),
            "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
            "JUPYTER_DATA_DIR": str(folder / "data")}


def write_server_config(config_dir: Path, extensions: dict[str, bool]) -> None:
    """Enable exactly ``extensions`` (the others the environment has stay off)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": extensions}}))


class JupyterProcess:
    """``argv`` started at once; :meth:`wait_listening` gives its ``http://127.0.0.1:PORT``."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path | None = None,
                 name: str = "jupyter"):
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            text=True, errors="replace",
        )
        self._listening: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        found = False
        for line in self.proc.stdout:
            self.lines.append(line)
            match = ORIGIN.search(line)
            if match and not found:
                found = True
                self._listening.put(match.group(1))
        self._listening.put(None)

    def tail(self, n: int = 30) -> str:
        return "".join(self.lines[-n:])

    def wait_listening(self, timeout: float) -> str:
        """The origin it listens on; AssertionError (with its last lines) if it is not up."""
        try:
            origin = self._listening.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.name} not up in {timeout:g} s:\n{self.tail()}") from None
        if origin is None:
            raise AssertionError(f"{self.name} exited:\n{self.tail()}")
        # Jupyter prints its address before its loop runs; connections can be refused
        # for a moment after. Ready is when one is accepted.
        host, port = origin.rsplit("/", 1)[1].rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=timeout).close()
                return origin
            except ConnectionRefusedError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.name} printed {origin} but refuses connections:\n"
                        f"{self.tail()}") from None
                time.sleep(0.05)  # a poll interval: Jupyter says nothing when it is ready

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM (Jupyter then shuts its kernels down); kill if it hangs. True if it stopped."""
        clean = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                clean = False
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return clean
