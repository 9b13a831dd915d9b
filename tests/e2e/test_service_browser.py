"""The browser's side of `serve` as a service: Debian's Chromium against
`python -m wsdemo serve` started as a user starts it.

* DNS rebinding, for real: Chromium resolves ``evil.example`` to 127.0.0.1
  (``--host-resolver-rules``), the attacker's page is served under that name on the
  server's own port (Playwright answers the page request, as the attacker's server
  did before the name was re-pointed), and its WebSocket goes to the wsdemo server
  with ``Origin`` and ``Host`` both ``evil.example:PORT`` — same-origin as far as
  the browser and Tornado's own rule are concerned.
* A page of another origin (another localhost port), a WebSocket without the
  subprotocol, and the control page over TLS.
"""

from __future__ import annotations

import pytest

from tests.conftest import launched_chromium
from tests.support.serve import cli, serving
from tests.support.tls import self_signed

pytestmark = pytest.mark.browser

# What the attacker's page does: open a WebSocket and report how it ended.
ATTACK = """
<!doctype html><title>attacker</title>
<script>
window.outcome = new Promise((resolve) => {
  const ws = new WebSocket(`ws://${location.host}/ws`, PROTOCOLS);
  ws.onopen = () => resolve("open");
  ws.onclose = (e) => resolve(`closed ${e.code}`);
});
</script>
"""


def attack_page(protocols: str = '["wsdemo.v1"]') -> str:
    return ATTACK.replace("PROTOCOLS", protocols)


async def outcome_of(browser, url: str, html: str, **context_options) -> str:
    context = await browser.new_context(**context_options)
    try:
        page = await context.new_page()

        async def serve_attack(route):
            await route.fulfill(status=200, content_type="text/html", body=html)

        await page.route(url, serve_attack)
        await page.goto(url)
        return await page.evaluate("window.outcome")
    finally:
        await context.close()


@pytest.fixture
def keys(tmp_path):
    path = tmp_path / "serve.keys"
    assert cli("keys", "new", str(path)).returncode == 0
    return path


# Recent Chromium (156 here) blocks a page of a public name from reaching a loopback
# address by itself (Local Network Access: the console says
# net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS). Other browsers, older ones, and
# a name that resolves to a LAN address the browser counts as local do not; the
# server must refuse without that help, so the test turns it off.
# A page Playwright answers for counts as public to it too.
NO_LNA = ["--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests"]
REBINDING = ["--host-resolver-rules=MAP evil.example 127.0.0.1", *NO_LNA]


async def test_a_dns_rebinding_page_cannot_open_the_socket(keys):
    async with launched_chromium(*REBINDING) as browser:
        async with serving("--secret-file", str(keys)) as served:
            url = f"http://evil.example:{served.port}/"
            assert await outcome_of(browser, url, attack_page()) == "closed 1006"
        # The control: told that evil.example is its name, the same server lets the
        # same page in: what refused it above was the Host check, nothing else.
        async with serving("--secret-file", str(keys), "--public-name", "evil.example"
                           ) as served:
            url = f"http://evil.example:{served.port}/"
            assert await outcome_of(browser, url, attack_page()) == "open"


async def test_a_page_on_another_localhost_port_cannot_open_the_socket():
    # Another port of the same machine (a dev server, a compromised tool): no page
    # there is served by wsdemo, so Playwright answers for it.
    other = "http://localhost:1/"
    async with launched_chromium(*NO_LNA) as browser:
        # An open server on loopback, the most trusting set-up.
        async with serving() as served:
            html = attack_page().replace("${location.host}", f"127.0.0.1:{served.port}")
            assert await outcome_of(browser, other, html) == "closed 1006"
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(served.url)  # the control page itself: its own origin
            await page.wait_for_function(
                "document.querySelector('#app')?.dataset.state === 'live'", timeout=10_000)
            await context.close()
        # The control: the same page, its origin allowed, opens the socket.
        async with serving("--origin", "http://localhost:1") as served:
            html = attack_page().replace("${location.host}", f"127.0.0.1:{served.port}")
            assert await outcome_of(browser, other, html) == "open"


async def test_chromium_without_the_subprotocol_is_refused_and_with_it_served():
    async with launched_chromium() as browser, serving() as served:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(served.url)  # same origin, so only the subprotocol differs
        script = """(protocols) => new Promise((resolve) => {
            const ws = protocols ? new WebSocket(URL, protocols) : new WebSocket(URL);
            ws.onopen = () => { resolve(`open ${ws.protocol}`); ws.close(); };
            ws.onclose = (e) => resolve(`closed ${e.code}`);
        })""".replace("URL", repr(served.ws_url))
        assert await page.evaluate(script, None) == "closed 1006"
        assert await page.evaluate(script, ["chat"]) == "closed 1006"
        assert await page.evaluate(script, ["wsdemo.v1"]) == "open wsdemo.v1"
        await context.close()


async def test_the_control_page_works_over_tls(tmp_path):
    certfile, keyfile = self_signed(tmp_path)
    async with launched_chromium() as browser, serving(
            "--certfile", str(certfile), "--keyfile", str(keyfile)) as served:
        assert served.url.startswith("https://")
        # Only for this test's self-signed certificate.
        context = await browser.new_context(ignore_https_errors=True)
        page = await context.new_page()
        sockets = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(served.url)
        await page.wait_for_function(
            "document.querySelector('#app')?.dataset.state === 'live'", timeout=10_000)
        assert sockets and all(url.startswith("wss://") for url in sockets), sockets
        await context.close()
