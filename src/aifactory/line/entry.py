"""Run one step's entry point: `python -m aifactory.line.entry TARGET`.

TARGET is `package.module:function` or `path/to/file.py:function`. The function is called as
`fn(params, inputs)` with the step's parameters and inputs (from `AIFACTORY_STEP_FILE`); the
dict it returns (if any) is merged into the step's outputs.json. Built-in kinds and a user's
own `entry:` steps run through here alike.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aifactory.core.errors import AifactoryError, SpecError
from aifactory.line import step


def resolve(target: str) -> Callable[[dict[str, Any], dict[str, Any]], Any]:
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise SpecError("entry", f"{target!r}: expected module:function or file.py:function")
    if where.endswith(".py"):
        path = Path(where).absolute()
        if not path.is_file():
            raise SpecError("entry", f"no such file: {where}")
        sys.path.insert(0, str(path.parent))  # the script's own folder, as `python file.py` would have it
        spec = importlib.util.spec_from_file_location(f"aifactory_step_{path.stem}", path)
        assert spec is not None and spec.loader is not None  # a .py file path always gives one
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise SpecError("entry", f"{where}: cannot be imported ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise SpecError("entry", f"{where} has no function {name!r}")
    return fn


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m aifactory.line.entry module:function", file=sys.stderr)
        return 2
    try:
        result = resolve(args[0])(step.params(), step.inputs())
        if result is not None:
            if not isinstance(result, dict):
                raise SpecError("entry", f"{args[0]} returned {type(result).__name__}, expected a dict or None")
            step.output(**result)
    except AifactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
