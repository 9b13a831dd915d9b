"""Small display helpers for notebooks: deterministic text, live HTML."""

from __future__ import annotations

import html

__all__ = ["PageFrame"]


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
