"""The whole loop through the real front end: JupyterLab, a kernel, a widget, the page.

One test, in the order a learner meets it:

1. ``jupyter lab`` starts as a subprocess (token login, a free port, its own
   config, data, runtime, settings and workspace dirs, the notebook folder a
   temporary one) with jupyter-server-proxy loaded, as on Binder;
2. Chromium opens a small notebook written by this test and runs all its
   cells from the Run menu: the kernel launches the wsdemo control server,
   exposes an ``IntSlider`` and writes the server's port to a file;
3. the test drags the slider *as JupyterLab renders it* (the noUiSlider
   handle of ipywidgets 8) with the mouse, and a :class:`ControlClient` in
   this process receives the event;
4. the client sets the value, and the rendered slider moves;
5. the control page, opened through ``/proxy/PORT/`` of the same Jupyter
   server, moves the same slider, and JupyterLab's rendering follows.

Every wait is bounded and waits for a condition, never for time to pass.
JupyterLab needs 10-20 s to start and load on two cores, hence the limits.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.jupyter import JupyterProcess, loopback_args, private_dirs, write_server_config
from wsdemo import ControlClient

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips (or fails, where required) with the reason
    expect = None

pytestmark = pytest.mark.browser

START_S = 60.0       # jupyter lab listening
LOAD_MS = 60_000     # JupyterLab's page loaded and the notebook open
KERNEL_MS = 30_000   # kernel started, cells run, widget rendered
WAIT_MS = 5_000      # everything after that
WAIT_S = WAIT_MS / 1000
ROOM = "controls"

# The notebook under test. The port goes to a file only once the slider is
# exposed, so a client that reads it finds the control there.
NOTEBOOK_CELLS = [
    "import json\n"
    "from pathlib import Path\n"
    "\n"
    "import ipywidgets as w\n"
    "\n"
    "import wsdemo\n"
    "\n"
    "server = wsdemo.launch()",
    "speed = w.IntSlider(value=3, min=0, max=10, description='speed',\n"
    "                    layout=w.Layout(width='480px'))\n"
    "server.expose('speed', speed)\n"
    "Path('server.json').write_text(json.dumps({'port': server.port}))\n"
    "speed",
]

# JupyterLab settings for a quiet run: no "would you like news?" toast over the
# notebook, no update check over the network.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}


def write_notebook(path: Path) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )
    nbformat.write(notebook, path)


@pytest.fixture
async def jupyter_lab(tmp_path):
    """``(base_url, token, notebook_dir)`` of a ``jupyter lab`` run for this test only."""
    pytest.importorskip("jupyterlab")
    pytest.importorskip("jupyter_server_proxy")
    # Lab and the proxy; the language-server extension would only scan for servers.
    write_server_config(tmp_path / "config", {
        "jupyterlab": True, "jupyter_server_proxy": True, "jupyter_lsp": False,
        "jupyter_server_terminals": False, "notebook_shim": False})
    settings = tmp_path / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(root / "e2e.ipynb")
    token = secrets.token_hex(16)
    lab = JupyterProcess(
        [sys.executable, "-m", "jupyterlab", "--allow-root", *loopback_args(token),
         f"--ServerApp.root_dir={root}",
         f"--LabApp.user_settings_dir={settings}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"],
        env={**os.environ, **private_dirs(tmp_path)}, name="jupyter lab")
    try:
        # The wait blocks this test's loop, which has nothing else to run yet.
        yield lab.wait_listening(START_S), token, root
    finally:
        # SIGTERM: Jupyter shuts its kernels down before it exits (and a kernel
        # whose parent is gone exits by itself, should it come to a kill).
        stopped_cleanly = await asyncio.to_thread(lab.stop, 20)
        # A kernel shut down by Jupyter has its connection file removed.
        left = list((tmp_path / "runtime").glob("kernel-*.json"))
        assert not stopped_cleanly or not left, f"kernels left running: {left}"


async def read_port(folder: Path) -> int:
    """The port the notebook wrote (it is there once the slider is rendered; bounded anyway)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    path = folder / "server.json"
    while not path.exists():
        if loop.time() > deadline:
            raise AssertionError(f"the notebook did not write {path}")
        await asyncio.sleep(0.05)  # polling a file: there is no event to wait for
    return json.loads(path.read_text())["port"]


async def next_speed(client: ControlClient, value: int, *, sender: str | None = None
                     ) -> dict[str, Any]:
    """The first ``speed`` event with ``value`` (skipping the steps of a drag on the way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    seen = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no speed={value} event from {sender or 'anyone'}; saw {seen}")
        event = await client.next_event(ROOM, timeout=remaining)
        seen.append((event["from"], event["data"]))
        if event["data"] == {"target": "speed", "value": value} and sender in (None,
                                                                                event["from"]):
            return event


async def test_jupyterlab_slider_python_client_and_page_move_together(browser, jupyter_lab):
    base, token, root = jupyter_lab
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    client = None
    errors: list[str] = []
    try:
        # --- JupyterLab opens the notebook and runs it --------------------------
        lab = await context.new_page()
        # ?token= logs the browser in to Jupyter (a cookie), for the proxy too.
        await lab.goto(f"{base}/lab/tree/e2e.ipynb?token={token}", timeout=LOAD_MS)
        await expect(lab.locator(".jp-Notebook .jp-Cell")).to_have_count(2, timeout=LOAD_MS)
        # Run All before the kernel is up is dropped, not queued: wait for the
        # status bar to say the notebook's kernel is idle.
        await expect(lab.locator(".jp-StatusBar-TextItem").filter(
            has_text=re.compile(r"Python 3.*\| Idle"))).to_be_visible(timeout=KERNEL_MS)
        await lab.get_by_role("menuitem", name="Run", exact=True).click()
        await lab.get_by_role("menuitem", name="Run All Cells", exact=True).click()

        slider = lab.locator(".jp-OutputArea .widget-slider")
        handle = slider.locator(".noUi-handle")
        readout = slider.locator(".widget-readout")
        await expect(handle).to_be_visible(timeout=KERNEL_MS)
        await expect(readout).to_have_text("3")

        client = await ControlClient.connect(f"ws://127.0.0.1:{await read_port(root)}/ws",
                                             client="e2e")
        snapshot = await client.join(ROOM)
        assert snapshot["state"] == {"speed": 3}

        # --- drag the rendered slider: the Python client sees it ----------------
        track = await slider.locator(".noUi-base").bounding_box()
        grip = await handle.bounding_box()
        y = grip["y"] + grip["height"] / 2
        await lab.mouse.move(grip["x"] + grip["width"] / 2, y)
        await lab.mouse.down()
        await lab.mouse.move(track["x"] + track["width"] * 0.8, y, steps=8)
        await lab.mouse.up()
        await expect(readout).to_have_text("8")
        # Each step of the drag reached the kernel; the last one is where the hand let go.
        event = await next_speed(client, 8, sender="kernel")
        await expect(handle).to_have_attribute("aria-valuenow", "8.0")

        # --- the Python client sets it: the rendered slider moves ---------------
        ack = await client.set(ROOM, "speed", 2)
        assert ack["seq"] > event["seq"]
        await expect(readout).to_have_text("2", timeout=WAIT_MS)
        await expect(handle).to_have_attribute("aria-valuenow", "2.0")

        # --- the control page through /proxy/PORT/ moves it too -----------------
        port = await read_port(root)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{base}/proxy/{port}/")
        app = page.locator("#app")
        await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        assert await page.evaluate("wsdemo.url") == (
            f"{base.replace('http:', 'ws:')}/proxy/{port}/ws")
        speed = page.locator('[data-target="speed"]')
        await expect(speed).to_have_value("2")
        await speed.focus()
        await page.keyboard.press("ArrowRight")
        await next_speed(client, 3, sender=await app.get_attribute("data-session"))

        # JupyterLab's rendering follows (in front again, as a learner would look).
        await lab.bring_to_front()
        await expect(readout).to_have_text("3", timeout=WAIT_MS)
        await expect(handle).to_have_attribute("aria-valuenow", "3.0")
    finally:
        if client is not None:
            await client.close()
        await context.close()
    assert not errors, f"JavaScript errors on the control page: {errors}"
