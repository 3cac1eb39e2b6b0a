"""YAML and TOML read with limits: size, nesting depth and (YAML) aliases.

A billion-laughs file (aliases of aliases) expands to gigabytes in `yaml.safe_load`; here its
event stream is scanned first, which never expands an alias, and a file over the limits is a
SpecError naming the field before any of it is built.
"""

from __future__ import annotations

import tomllib
from typing import Any

import yaml

from aifactory.core.errors import SpecError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_NODES = 100_000  # values a document may expand to, aliases counted as what they stand for


def _size(text: str, field: str, where: str, max_bytes: int) -> None:
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise SpecError(field, f"{where}: larger than {max_bytes} bytes")


def load_yaml(text: str, field: str = "file", where: str = "YAML", max_bytes: int = MAX_BYTES) -> Any:
    """`yaml.safe_load(text)` once the text is within the limits (yaml.YAMLError for bad syntax)."""
    _size(text, field, where, max_bytes)
    # Each open collection's node count as expanded (an alias counts as its anchor's whole size):
    # what the document becomes once something walks it, computed without building any of it.
    open_: list[tuple[int, str | None]] = []  # (nodes so far, its anchor)
    anchors: dict[str, int] = {}
    aliases = 0

    def done(size: int, anchor: str | None) -> None:
        if anchor is not None:
            anchors[anchor] = size
        if open_:
            count, own = open_[-1]
            count += size
            if count > MAX_NODES:
                raise SpecError(field, f"{where}: expands to more than {MAX_NODES} values (aliases of aliases?)")
            open_[-1] = (count, own)

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) >= MAX_DEPTH:
                raise SpecError(field, f"{where}: nested deeper than {MAX_DEPTH} levels")
            open_.append((1, event.anchor))
        elif isinstance(event, yaml.CollectionEndEvent):
            done(*open_.pop())
        elif isinstance(event, yaml.ScalarEvent):
            done(1, event.anchor)
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise SpecError(field, f"{where}: more than {MAX_ALIASES} aliases (*name)")
            done(anchors.get(event.anchor or "", 1), None)
    return yaml.safe_load(text)


def load_toml(text: str, field: str = "file", where: str = "TOML", max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """`tomllib.loads(text)` within the size limit, its nesting checked (tomllib.TOMLDecodeError
    for bad syntax). TOML has no aliases; its depth is bounded by the size, and checked anyway."""
    _size(text, field, where, max_bytes)
    data = tomllib.loads(text)
    _check_depth(data, field, where)
    return data


def _check_depth(data: Any, field: str, where: str) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(field, f"{where}: nested deeper than {MAX_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def read_bounded(path: Any, field: str = "file", max_bytes: int = MAX_BYTES) -> str:
    """A text file's content, refused (SpecError naming `field`) before reading if it is too large."""
    from pathlib import Path

    p = Path(path)
    try:
        if p.stat().st_size > max_bytes:
            raise SpecError(field, f"{p}: larger than {max_bytes} bytes")
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(field, f"cannot read {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(field, f"{p}: not UTF-8 text") from None
