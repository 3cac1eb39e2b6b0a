"""Docs that run: every shell block in docs/ marked `<!-- runnable -->` runs, in order, against a fresh home."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- runnable -->\n```(sh|bash)\n(.*?)```", re.S)
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if BLOCK.search(p.read_text()))


def test_the_docs_mark_blocks_to_run() -> None:
    assert {p.name for p in DOCS} >= {"line.md", "serving.md"}


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_runnable_blocks_run(doc: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIFACTORY_HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path),
        # the docs' `aifactory` and `python` are this environment's
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    for i, match in enumerate(BLOCK.finditer(doc.read_text())):
        script = match.group(2)
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (
            f"{doc.name} block {i + 1} failed:\n{script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        assert "Traceback" not in done.stderr, done.stderr
