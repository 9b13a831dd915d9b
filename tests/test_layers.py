"""The sans-I/O layer imports no networking: lessons and tests drive it without sockets."""

import subprocess
import sys

import pytest

SANS_IO = ["wsdemo.protocol", "wsdemo.eventlog", "wsdemo.controls", "wsdemo.access",
           "wsdemo.wire", "wsdemo.tap_http", "wsdemo.tap_decode", "wsdemo.tap_frames",
           "wsdemo.tap_jupyter"]
FORBIDDEN = ["socket", "asyncio", "tornado", "ssl", "selectors", "ipywidgets"]


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_module_imports_no_networking(module):
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"
