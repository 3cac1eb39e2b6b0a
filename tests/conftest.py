"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Jobs in most tests run the venv's Python, which lives where an unprivileged account may not
# reach (/root here): those servers keep jobs on the test's own account. The isolation tests ask
# for `--isolation full` themselves.
os.environ["AIFACTORY_ISOLATION"] = "none"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data`, read in place; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
