"""What a step runs and what its result depends on: one shape for built-in kinds and a user's own steps.

A built-in kind runs `python -m aifactory.line.entry <its entry>`; its code is the source of
its modules. A user's step runs its `command` (a shell line, or a list run without a shell)
or `python -m aifactory.line.entry <entry>` in the pipeline's folder; its code is the command
text, the entry, every file it names under `code`, a `.py` entry's file and every word of the
command that is a file in the pipeline's folder. Either way the code's sha256, the params and
the inputs make the step's cache key.

Placeholders in a command: `{params.NAME}`, `{inputs.NAME}`, `{dir}` (the step's folder) and
`{python}` (the factory's Python); in a shell line each value is quoted. Other braces are left
alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifactory.core.errors import SpecError
from aifactory.line.kinds import code_hash, get_step_kind
from aifactory.line.pipeline import Pipeline, Step

PLACEHOLDER = re.compile(r"\{(params|inputs)\.([A-Za-z_][A-Za-z0-9_.-]*)\}|\{(dir|python)\}")
MAX_CODE_BYTES = 256 << 20  # code hashed per step: beyond this, name fewer files


@dataclass(frozen=True)
class StepCode:
    kind: str
    digest: str  # 12 hex digits of the code's sha256
    cache: bool
    gpus: float
    required: tuple[str, ...]
    cwd: Path | None  # None: the step's own folder
    outputs_required: bool  # a built-in kind always writes outputs.json
    entry: str | None

    def command(self, step: Step, inputs: dict[str, Any], workdir: Path) -> tuple[str, ...]:
        if self.entry is not None:
            return (sys.executable, "-m", "aifactory.line.entry", self.entry)
        raw = step.command
        values = {"params": step.params, "inputs": inputs, "dir": str(workdir), "python": sys.executable}
        if isinstance(raw, list):
            return tuple(_fill(part, values, step.name, quote=False) for part in raw)
        return ("/bin/sh", "-c", _fill(str(raw), values, step.name, quote=True))


def _fill(text: str, values: dict[str, Any], step: str, quote: bool) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(3):
            value: Any = values[m.group(3)]
        else:
            where, name = m.group(1), m.group(2)
            if name not in values[where]:
                known = ", ".join(sorted(values[where])) or "none"
                raise SpecError(f"steps.{step}.command", f"{{{where}.{name}}}: no such {where[:-1]} (known: {known})")
            value = values[where][name]
        text = value if isinstance(value, str) else json.dumps(value)
        return shlex.quote(text) if quote else text

    return PLACEHOLDER.sub(sub, text)


def step_code(step: Step, pipeline: Pipeline, inputs: dict[str, Any]) -> StepCode:
    if not step.custom:
        kind = get_step_kind(step.kind_name)
        return StepCode(kind.name, code_hash(kind), kind.cache, kind.gpus, kind.required, None, True, kind.entry)
    root = Path(pipeline.root or ".").absolute()
    digest = hashlib.sha256(json.dumps({"command": step.command, "entry": step.entry}, sort_keys=True).encode())
    total = 0
    for rel, path in _code_files(step, root):
        data = path.read_bytes()
        total += len(data)
        if total > MAX_CODE_BYTES:
            raise SpecError(f"steps.{step.name}.code", f"more than {MAX_CODE_BYTES >> 20} MiB of code to hash")
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    entry = step.entry
    if entry is not None:
        where, _, fn = entry.rpartition(":")
        if where.endswith(".py") and not Path(where).is_absolute():
            entry = f"{root / where}:{fn}"
    return StepCode("command", digest.hexdigest()[:12], True, 1.0, (), root, False, entry)


def _code_files(step: Step, root: Path) -> Iterator[tuple[str, Path]]:
    """(name, file) of everything a user's step's result depends on, sorted, each once."""
    found: dict[str, Path] = {}
    for name in step.code:
        path = root / name
        if not path.exists():
            raise SpecError(f"steps.{step.name}.code", f"{name}: no such file or folder under {root}")
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                found[sub.relative_to(root).as_posix()] = sub
        else:
            found[name] = path
    words: list[str] = []
    if isinstance(step.command, list):
        words = list(step.command)
    elif step.command:
        try:
            words = shlex.split(step.command)
        except ValueError:
            words = step.command.split()
    if step.entry:
        words.append(step.entry.rpartition(":")[0])
    for word in words:
        if PLACEHOLDER.search(word) or (os.sep not in word and "." not in word):
            continue
        path = root / word
        if path.is_file():
            found.setdefault(word, path)
    yield from sorted(found.items())
