"""`printable(text)`: user-provided text made safe for a terminal.

Names, commands and reasons come from other tenants; printed raw, an ANSI or OSC escape in them
could rewrite the screen, set the window title or hide lines. Control characters are shown as
Python escapes instead (`\\x1b`); rich markup is never applied to them (consoles are made with
markup off).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any


def printable(text: object) -> str:
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in s)


def _escape(c: str) -> str:
    if unicodedata.category(c) == "Zs":  # other spaces: harmless
        return c
    return repr(c)[1:-1] if c not in "'\"" else c


def to_jsonable(value: Any) -> Any:
    """Wire models, dataclasses, lists and dicts of them as plain JSON values."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def json_text(value: Any) -> str:
    """`value` as indented JSON (for `--json`): what a script reads, never a table."""
    return json.dumps(to_jsonable(value), indent=2, default=str)
