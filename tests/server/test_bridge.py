"""The widget bridge with real ipywidgets: specs read from the widget, values both ways."""

import asyncio
import threading

import ipywidgets as w
import pytest

from wsdemo import ControlClient, ControlServer, ServerError
from wsdemo.server.bridge import spec_for


@pytest.mark.parametrize(
    ("widget", "described"),
    [
        (w.IntSlider(min=1, max=9, step=2), {"kind": "int", "min": 1, "max": 9, "step": 2}),
        (w.FloatSlider(min=0, max=2, step=0.5), {"kind": "float", "min": 0, "max": 2, "step": 0.5}),
        (w.ToggleButton(), {"kind": "bool"}),
        (w.Checkbox(), {"kind": "bool"}),
        (w.Dropdown(options=[("Low", 1), ("High", 2)]),
         {"kind": "choice", "options": [1, 2], "labels": ["Low", "High"]}),
        (w.Text(), {"kind": "text", "max_length": 4096}),
        (w.ColorPicker(), {"kind": "color"}),
    ],
)
def test_spec_is_read_from_the_widget(widget, described):
    assert spec_for(widget).describe() == described


def test_unsupported_widget_is_refused_with_the_list():
    with pytest.raises(TypeError, match="cannot expose a Button; supported: IntSlider"):
        spec_for(w.Button())


@pytest.fixture
async def bridged():
    widgets = {
        "level": w.IntSlider(value=2, min=0, max=4),
        "shape": w.Dropdown(options=[("circle", object()), ("square", object())]),
        "tint": w.ColorPicker(value="red"),
    }
    srv = ControlServer(port=0).start()
    for name, widget in widgets.items():
        srv.expose(name, widget, room="lab")
    client = await ControlClient.connect(srv.ws_url)
    try:
        yield srv, widgets, client
    finally:
        await client.close()
        await srv.stop()


async def test_values_json_cannot_carry_travel_as_labels(bridged):
    srv, widgets, client = bridged
    snapshot = await client.join("lab")
    assert snapshot["controls"]["shape"]["options"] == ["circle", "square"]
    assert snapshot["state"]["shape"] == "circle"
    assert snapshot["state"]["tint"] == "#ff0000", "a CSS name is sent as hex"
    await client.set("lab", "shape", "square")
    assert widgets["shape"].value is widgets["shape"].options[1][1]
    with pytest.raises(ServerError, match="out-of-range"):
        await client.set("lab", "shape", "triangle")


async def test_limits_are_read_when_the_set_arrives(bridged):
    srv, widgets, client = bridged
    await client.join("lab")
    with pytest.raises(ServerError, match="above the maximum 4"):
        await client.set("lab", "level", 6)
    widgets["level"].max = 8  # the notebook widens the slider
    assert (await client.set("lab", "level", 6))["duplicate"] is False
    assert widgets["level"].value == 6


async def test_a_change_from_another_thread_is_marshalled_to_the_loop(bridged):
    srv, widgets, client = bridged
    await client.join("lab")
    thread = threading.Thread(target=lambda: setattr(widgets["level"], "value", 3))
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    event = await client.next_event("lab")
    assert event["from"] == "kernel" and event["data"] == {"target": "level", "value": 3}


async def test_stopping_the_server_unobserves_the_widgets(bridged):
    srv, widgets, client = bridged
    await srv.stop()
    widgets["level"].value = 1  # must not schedule anything on a stopped server
    assert not srv.rooms["lab"].bridge.targets
