"""Wire types at the edge: sizes, durations and the strict job submission (no server needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aifactory.cli.floor import duration
from aifactory.live.wire import JobSubmit, parse_duration_s, parse_memory_mib


@pytest.mark.parametrize(
    ("text", "mib"),
    [("20GiB", 20480), ("512MiB", 512), ("1.5G", 1536), ("2 gb", 2048), ("1TiB", 1 << 20), (100, 100), ("64", 64)],
)
def test_memory_sizes(text: str | int, mib: int) -> None:
    assert parse_memory_mib(text) == mib


@pytest.mark.parametrize("bad", ["lots", "0", "0GiB", "-1G", "20 parsecs", True, 0])
def test_bad_memory_sizes(bad: str | int) -> None:
    with pytest.raises(ValueError):
        parse_memory_mib(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h30m", 5400.0), ("90s", 90.0), ("2d", 172800.0), ("1.5h", 5400.0), (30, 30.0), ("45", 45.0), ("1m30s", 90.0)],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "0s", "-5", "1h30", "h", "1 h", False, 0])
def test_bad_durations(bad: str | float) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(bad)


def test_submission_becomes_a_core_spec() -> None:
    body = JobSubmit.model_validate(
        {"command": "python train.py --lr '3e-4'", "gpu_memory": "20GiB", "time_limit": "1h", "env": {"A": "1"}}
    )
    spec = body.to_spec(user="alice")
    assert spec.command == ("python", "train.py", "--lr", "3e-4")
    assert (spec.user, spec.project, spec.gpu_memory_mib, spec.time_limit_s, spec.env) == (
        "alice",
        "default",
        20480,
        3600.0,
        {"A": "1"},
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": ["x"], "gpus": True}, "gpus"),
        ({"command": ["x"], "gpus": "1"}, "gpus"),
        ({"command": ["x"], "gpus": float("nan")}, "gpus"),
        ({"command": ["x"], "priority": 1.5}, "priority"),
        ({"command": ["x"], "multi_node": "yes"}, "multi_node"),
        ({"command": ["x"], "user": "root"}, "user"),
        ({"command": "   "}, "command"),
    ],
)
def test_strict_fields(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        JobSubmit.model_validate(body)
    assert field in err.value.errors()[0]["loc"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.85, "850ms"), (4.25, "4.2s"), (42, "42s"), (185, "3m05s"), (7260, "2h01m")],
)
def test_duration_cells(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text
