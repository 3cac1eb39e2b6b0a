"""`printable(text)`: user-provided text made safe for a terminal.

Names, commands and reasons come from other tenants; printed raw, an ANSI or OSC escape in them
could rewrite the screen, set the window title or hide lines. Control characters are shown as
Python escapes instead (`\\x1b`); rich markup is never applied to them (consoles are made with
markup off).
"""

from __future__ import annotations

import unicodedata


def printable(text: object) -> str:
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in s)


def _escape(c: str) -> str:
    if unicodedata.category(c) == "Zs":  # other spaces: harmless
        return c
    return repr(c)[1:-1] if c not in "'\"" else c
