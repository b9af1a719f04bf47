"""Keeping a connection's provider key out of every upstream text the sidecar passes on. Pure.

An upstream error may quote the key it was sent, whole or cut (``Incorrect API key provided: …``,
``API key '…' has no access``, a 400 echoing request headers). ``KeyScrubber`` is built once per
connection when the config loads: every 8-character window of the key in a set, so a scan is one
set lookup per character of the text, run only on error paths. Any run of text covered by windows of
the key (that is, any fragment of it of 8 characters or more) is replaced, and so is anything shaped
like a key (``sk-…``, ``AIza…``, ``Bearer …``) whatever connection it belongs to.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
FRAGMENT = 8  # a fragment this long or longer never leaves the sidecar (OpenAI's masked form keeps 4)
_SHAPES = re.compile(r"sk-[A-Za-z0-9_\-*.]{4,}|AIza[0-9A-Za-z_\-]{10,}|(?i:bearer)\s+\S+")


class KeyScrubber:
    """Replaces a key's fragments of ``FRAGMENT``+ characters (the whole of a shorter key) in text."""

    __slots__ = ("_width", "_windows")

    def __init__(self, key: str | None) -> None:
        width = min(FRAGMENT, len(key)) if key else 0
        self._width = width
        self._windows = (
            frozenset(key[i : i + width] for i in range(len(key) - width + 1)) if key else frozenset()
        )

    def scrub(self, text: str) -> str:
        """``text`` without the key's fragments or key-shaped strings."""
        if self._windows and len(text) >= self._width:
            text = self._scrub_fragments(text)
        return _SHAPES.sub(REDACTED, text)

    def _scrub_fragments(self, text: str) -> str:
        width, windows = self._width, self._windows
        out: list[str] = []
        kept = 0  # text before this index is already in ``out``
        covered = -1  # end of the fragment run being cut (exclusive); -1 when none
        start = 0
        for i in range(len(text) - width + 1):
            if text[i : i + width] in windows:
                if i > covered:  # a new run (runs that touch or overlap are one)
                    if covered >= 0:
                        out += (text[kept:start], REDACTED)
                        kept = covered
                    start = i
                covered = i + width
        if covered < 0:
            return text
        out += (text[kept:start], REDACTED, text[covered:])
        return "".join(out)


NO_KEY = KeyScrubber(None)  # immutable: scrubs key shapes only
