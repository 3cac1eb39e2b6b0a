"""`new_app(...)`: every Typer app of the CLI made the same way.

Plain (click-style) help rather than rich's: it shows flags as flags (rich mode prints `<bool>`
after each) and does not read `[...]` in help texts as markup.
"""

from __future__ import annotations

from typing import Any

import typer


def new_app(**options: Any) -> typer.Typer:
    return typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, **options)
