"""The control page: the HTML file served at ``/``, and its frame in a notebook.

``static/index.html`` is the whole page (no build step); :class:`PageHandler`
serves it, :class:`PageFrame` embeds it in a notebook output.
"""

from __future__ import annotations

import functools
import html
from importlib import resources

import tornado.web

__all__ = ["PageFrame", "PageHandler", "page_bytes"]


@functools.cache
def page_bytes() -> bytes:
    """The control page, read once from the package."""
    return resources.files(__package__).joinpath("static/index.html").read_bytes()


class PageHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.write(page_bytes())


class PageFrame:
    """The control page in an iframe; its text form (what nbval compares) is just the link."""

    def __init__(self, url: str, height: int = 360):
        self.url = url
        self.height = height

    def __repr__(self) -> str:
        return f"control page: {self.url}"

    def _repr_html_(self) -> str:
        url = html.escape(self.url)
        return (
            f'<iframe src="{url}" width="100%" height="{int(self.height)}" '
            f'style="border:1px solid #ccc;border-radius:4px"></iframe>'
            f'<div><a href="{url}" target="_blank">open the control page in a new tab</a></div>'
        )
