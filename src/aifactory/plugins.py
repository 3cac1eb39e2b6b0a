"""Registries of plugins found by name: an entry is the thing itself, or "module:attribute"
imported on first use (so an executor or runner nobody asks for costs nothing, and a registry
can name code of a layer it must not import)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

from aifactory.core.errors import UnknownName

T = TypeVar("T")


def lookup(kind: str, registry: Mapping[str, T | str], name: str) -> T:
    """The entry `name` of `registry` (UnknownName with the known names), imported if named."""
    try:
        found = registry[name]
    except KeyError:
        raise UnknownName(kind, name, registry) from None
    if isinstance(found, str):
        module, attr = found.split(":")
        loaded: Any = getattr(importlib.import_module(module), attr)
        return loaded
    return found
