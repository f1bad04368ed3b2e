"""MyST snippets that the book's page generators share."""
from __future__ import annotations


def figure(path: str, name: str, caption: str) -> list[str]:
    """The lines of a numbered, captioned MyST figure of ``path`` (relative to the page), referable as ``name``."""
    return [f"```{{figure}} {path}", f":name: {name}", "", caption, "```", ""]
