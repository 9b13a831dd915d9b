"""Binder, rebuilt the way repo2docker builds it, then used the way a learner uses it.

repo2docker (``buildpacks/base.py`` and ``buildpacks/python/__init__.py``) reads
only ``binder/`` when the folder exists. For this repository it:

1. installs ``binder/apt.txt``'s packages (here: checked to be installed, since
   a test does not run apt-get);
2. makes an environment with the Python of ``binder/runtime.txt``;
3. copies the whole repository (``-r`` lines are "local" references, so nothing
   is installed from a subset of it) and runs ``pip install -r
   binder/requirements.txt`` with the repository as the working directory;
4. runs ``./binder/postBuild`` there, as the notebook user;
5. at every launch runs ``binder/start`` with the server's command as its
   arguments (``R2D_ENTRYPOINT``), in the repository folder.

This module does the same with a fresh virtual environment in place of the
conda one, a fresh ``HOME`` and an environment that inherits nothing from the
test's own Python. Only pip's download cache and network settings are shared
(repo2docker passes ``--no-cache-dir`` because an image keeps no cache; reusing
downloads changes no installed file). The server is ``jupyter lab`` under a hub
prefix (``/user/learner/``, with ``JUPYTERHUB_SERVICE_PREFIX`` set as a
JupyterHub spawner sets it), started through ``binder/start``.

Then, inside that server: a kernel launches the control server and a WebSocket
client moves its slider through jupyter-server-proxy at the address the package
itself gives; and every notebook passes strict nbval, run from a Jupyter
terminal as a learner would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import tornado.httpclient
import tornado.websocket

from tests.conftest import need
from tests.support.jupyter import JupyterProcess, loopback_args
from tests.support.redis import free_port
from wsdemo import ControlClient

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/user/learner/"   # a hub's per-user prefix, as on mybinder.org
BUILD_S = 900               # pip, with downloads cached: about 70 s
START_S = 90                # jupyter lab with every installed extension, on a busy machine
NBVAL_S = 900               # every notebook: about 2 min
IO_S = 30                   # one kernel execution or HTTP exchange

# Everything a build step and the server do here takes minutes, not the 300 s default.
pytestmark = pytest.mark.timeout(BUILD_S + START_S + NBVAL_S)


@dataclass
class Image:
    """A built Binder environment: the repository copy, the home folder, its variables."""

    repo: Path
    home: Path
    prefix: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"


def runtime_version(binder: Path) -> str:
    """``python-3.11`` in runtime.txt → ``3.11``."""
    text = (binder / "runtime.txt").read_text().strip()
    found = re.fullmatch(r"python-(\d+\.\d+)", text)
    assert found, f"binder/runtime.txt must say python-X.Y, not {text!r}"
    return found.group(1)


def apt_packages(binder: Path) -> list[str]:
    """apt.txt's packages, parsed and validated as repo2docker does."""
    packages = []
    for line in (binder / "apt.txt").read_text().splitlines():
        package = line.partition("#")[0].strip()
        if package:
            assert re.match(r"^[a-z0-9.+-]+$", package), f"bad package name in apt.txt: {package!r}"
            packages.append(package)
    return packages


def installed(package: str) -> bool:
    if not shutil.which("dpkg-query"):
        return False
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.endswith("installed")


def interpreter(version: str) -> str | None:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    return shutil.which(f"python{version}")


def copy_repository(dest: Path) -> None:
    """The files a clone would have: tracked or new, not ignored (no .venv, no caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a file deleted but not yet committed is not there
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def base_environment(home: Path, repo: Path, prefix: Path) -> dict[str, str]:
    """What repo2docker's image sets, and nothing of this test's own Python."""
    pip_cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    env = {
        "HOME": str(home), "USER": "learner", "SHELL": "/bin/bash", "LANG": "C.UTF-8",
        "REPO_DIR": str(repo), "KERNEL_PYTHON_PREFIX": str(prefix),
        "NB_PYTHON_PREFIX": str(prefix), "PYTHONUNBUFFERED": "1",
        "PATH": os.pathsep.join([str(home / ".local/bin"), str(repo / ".local/bin"),
                                 str(prefix / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "PIP_CACHE_DIR": pip_cache,
    }
    # The machine's network settings for pip (index, certificates, proxies).
    for name, value in os.environ.items():
        if name.startswith("PIP_") and name != "PIP_CACHE_DIR" or name in {
                "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
                "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}:
            env[name] = value
    return env


def run_step(argv: list[str], image_env: dict[str, str], cwd: Path, what: str) -> str:
    done = subprocess.run(argv, cwd=cwd, env=image_env, capture_output=True, text=True,
                          errors="replace", timeout=BUILD_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{what} failed (exit {done.returncode}):\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    binder = ROOT / "binder"
    version = runtime_version(binder)
    python = interpreter(version)
    need("binder", python is not None,
         f"binder/runtime.txt asks for Python {version}; there is no python{version} here")
    missing = [p for p in apt_packages(binder) if not installed(p)]
    need("binder", not missing, f"binder/apt.txt's {', '.join(missing)} not installed "
         f"(apt-get install {' '.join(missing)})")
    need("binder", shutil.which("git") is not None, "git is needed to copy the repository")

    tmp = tmp_path_factory.mktemp("binder")
    repo, home, prefix = tmp / "repo", tmp / "home", tmp / "env"
    copy_repository(repo)
    home.mkdir()
    env = base_environment(home, repo, prefix)
    run_step([python, "-m", "venv", str(prefix)], env, repo, f"python{version} -m venv")
    run_step([str(prefix / "bin/pip"), "install", "-q", "-r", "binder/requirements.txt"],
             env, repo, "pip install -r binder/requirements.txt")
    post_build = repo / "binder" / "postBuild"
    post_build.chmod(0o755)
    run_step(["./binder/postBuild"], env, repo, "binder/postBuild")
    return Image(repo, home, prefix, env)


@dataclass
class Launched:
    """The running server: where it is, and how a learner's browser would call it."""

    origin: str
    token: str
    redis_port: int
    lab: JupyterProcess

    @property
    def base(self) -> str:
        return self.origin + PREFIX

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


@pytest.fixture(scope="module")
def launched(image: Image):
    token = secrets.token_hex(16)
    redis_port = free_port()
    env = {**image.env, "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
           "WSDEMO_REDIS_PORT": str(redis_port)}
    argv = [str(image.repo / "binder/start"), "jupyter", "lab", *loopback_args(token),
            f"--ServerApp.base_url={PREFIX}"]
    if os.geteuid() == 0:  # Binder runs as an ordinary user; this machine's tests as root
        argv.append("--allow-root")
    lab = JupyterProcess(argv, env=env, cwd=image.repo, name="binder/start jupyter lab")
    try:
        yield Launched(lab.wait_listening(START_S), token, redis_port, lab)
    finally:
        lab.stop(20)
        pidfile = image.home / ".wsdemo-redis" / "redis.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)


async def fetch(launched: Launched, path: str, method: str = "GET",
                body: Any = None) -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(
        launched.base + path, method=method, headers=launched.headers(),
        body=None if body is None else json.dumps(body), request_timeout=IO_S,
        raise_error=True)


class Kernel:
    """A kernel of the Binder server, driven over its WebSocket as JupyterLab drives it."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection):
        self.conn = conn
        self.session = uuid.uuid4().hex

    async def run(self, code: str) -> str:
        """Execute ``code``; its printed output, or AssertionError with the traceback."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "learner",
                  "session": self.session, "date": datetime.now(UTC).isoformat(),
                  "version": "5.3"}
        await self.conn.write_message(json.dumps({
            "header": header, "parent_header": {}, "metadata": {}, "buffers": [],
            "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        printed: list[str] = []
        replied = idle = False
        while not (replied and idle):
            raw = await asyncio.wait_for(self.conn.read_message(), IO_S)
            assert raw is not None, "the kernel's WebSocket closed"
            if isinstance(raw, bytes):
                continue  # a message with binary buffers: not one of ours
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                printed.append(content["text"])
            elif kind == "error":
                raise AssertionError("\n".join(content["traceback"]))
            elif kind == "execute_reply":
                replied = True
                assert content["status"] == "ok", content
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        return "".join(printed)


def test_readme_badge_opens_the_index_on_binder():
    """The badge launches this repository's ``main`` (its address in pyproject.toml)
    in JupyterLab on the index notebook, which exists."""
    import tomllib

    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"][
        "Repository"]
    owner_name = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", repository)
    assert owner_name, f"project.urls.Repository is not a GitHub address: {repository}"
    badges = re.findall(r"\[!\[Binder\]\(https://mybinder\.org/badge_logo\.svg\)\]\(([^)]+)\)",
                        (ROOT / "README.md").read_text())
    assert len(badges) == 1, badges
    found = re.fullmatch(r"https://mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/main\?labpath=(\S+)",
                         badges[0])
    assert found, badges[0]
    assert found.group(1) == owner_name.group(1)
    # The learner's copy that binder/start makes from notebooks/ (test below).
    assert unquote(found.group(2)) == "my-course/00-index.ipynb"
    assert (ROOT / "notebooks" / "00-index.ipynb").is_file()


def test_start_gives_the_learner_a_copy_of_the_lessons(image, launched):
    """The badge opens my-course/00-index.ipynb: binder/start made it, from notebooks/."""
    stored = sorted(p.name for p in (image.repo / "notebooks").glob("*.ipynb"))
    copied = sorted(p.name for p in (image.repo / "my-course").glob("*.ipynb"))
    assert copied == stored and "00-index.ipynb" in copied
    assert (image.repo / "my-course" / "00-index.ipynb").read_bytes() == (
        image.repo / "notebooks" / "00-index.ipynb").read_bytes()


def test_start_gives_the_learner_a_redis(launched):
    """``binder/start`` ran before Jupyter: its Redis answers, with appendonly on."""
    redis = pytest.importorskip("redis")
    r = redis.Redis(port=launched.redis_port, socket_timeout=IO_S, decode_responses=True)
    try:
        assert r.ping()
        assert r.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        r.close()


async def test_a_kernel_drives_the_channel_through_the_proxy(image, launched):
    """A kernel of the Binder server runs the package installed from the repository;
    the control page and the WebSocket are reached at the address it gives, through
    jupyter-server-proxy under the hub prefix; a set moves the kernel's slider and a
    change in the kernel reaches the client."""
    started = json.loads((await fetch(launched, "api/kernels", "POST", {"name": "python3"})).body)
    conn = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        f"{launched.base.replace('http', 'ws', 1)}api/kernels/{started['id']}/channels",
        headers=launched.headers(), request_timeout=IO_S))
    kernel = Kernel(conn)
    client = None
    try:
        info = json.loads(await kernel.run(
            "import json, sys, ipywidgets, wsdemo\n"
            "server = wsdemo.launch()\n"
            "speed = server.expose('speed', ipywidgets.IntSlider(min=0, max=10))\n"
            "print(json.dumps({'python': sys.executable, 'package': wsdemo.__file__,\n"
            "                  'page': server.page_url}))\n"))
        assert Path(info["python"]).parent == image.prefix / "bin"
        assert Path(info["package"]).is_relative_to(image.repo / "wsdemo")  # -e .
        port = int(info["page"].rstrip("/").rsplit("/", 1)[1])
        assert info["page"] == f"{PREFIX}proxy/{port}/"

        page = await fetch(launched, info["page"][len(PREFIX):])
        assert b"<title>wsdemo control page</title>" in page.body

        client = await ControlClient.connect(
            f"{launched.origin.replace('http', 'ws', 1)}{info['page']}ws?token={launched.token}",
            client="binder-test", timeout=IO_S)
        snapshot = await client.join("controls")
        assert snapshot["state"]["speed"] == 0
        ack = await client.set("controls", "speed", 7)
        assert ack["type"] == "ack"
        assert await kernel.run("print(speed.value)") == "7\n"
        own = await client.next_event("controls", timeout=IO_S)  # every member gets it
        assert (own["seq"], own["data"]["value"]) == (ack["seq"], 7)

        await kernel.run("speed.value = 3")
        event = await client.next_event("controls", timeout=IO_S)
        assert (event["seq"], event["data"]) == (ack["seq"] + 1, {"target": "speed", "value": 3})
        await kernel.run("server.stop()")
    finally:
        if client is not None:
            await client.close()
        conn.close()
        await fetch(launched, f"api/kernels/{started['id']}", "DELETE")


async def test_every_notebook_passes_nbval_in_a_binder_terminal(image, launched):
    """Strict nbval over every notebook, typed into a Jupyter terminal of the Binder
    server: the kernels it starts live in the environment a learner gets."""
    created = json.loads((await fetch(launched, "api/terminals", "POST", {})).body)
    conn = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        f"{launched.base.replace('http', 'ws', 1)}terminals/websocket/{created['name']}",
        headers=launched.headers(), request_timeout=IO_S))
    report = image.home / "nbval.xml"
    log = image.home / "nbval.log"
    # A login shell: /etc/profile may set its own PATH, so the environment's Python is
    # named by the variable repo2docker sets. The quotes keep the echoed command from
    # matching the marker.
    command = (f'cd "$REPO_DIR" && "$KERNEL_PYTHON_PREFIX/bin/python" -m pytest -q '
               f'-p no:cacheprovider notebooks --junitxml={report} > {log} 2>&1; '
               f'echo "nbval-exit=""$?"\r')
    seen = ""
    try:
        await conn.write_message(json.dumps(["stdin", command]))

        async def until_exit() -> int:
            nonlocal seen
            while True:
                raw = await conn.read_message()
                assert raw is not None, f"the terminal closed:\n{seen[-2000:]}"
                kind, *rest = json.loads(raw)
                if kind == "stdout":
                    seen += rest[0]
                    found = re.search(r"nbval-exit=(\d+)", seen)
                    if found:
                        return int(found.group(1))

        status = await asyncio.wait_for(until_exit(), NBVAL_S)
    finally:
        conn.close()
        await fetch(launched, f"api/terminals/{created['name']}", "DELETE")
    output = log.read_text(errors="replace") if log.exists() else "(no log)"
    assert status == 0, f"nbval in the Binder terminal failed:\n{output[-6000:]}"

    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts
    ran = {case.get("classname", "") + "/" + case.get("file", "")
           for case in suite.iter("testcase")}
    for notebook in sorted((image.repo / "notebooks").glob("*.ipynb")):
        assert any(notebook.stem in name for name in ran), f"{notebook.name} was not run"
