from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.line.report import METRICS_ENV, read_metrics, report


def test_report_appends_json_lines_and_reader_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.jsonl"
    monkeypatch.setenv(METRICS_ENV, str(path))
    report(epoch=1, loss=0.5)
    records, offset = read_metrics(path)
    assert [(r["epoch"], r["loss"]) for r in records] == [(1, 0.5)] and records[0]["t"] > 0
    report(epoch=2, loss=0.25, note="ok")
    with open(path, "a") as fh:
        fh.write('{"epoch": 3, "lo')  # a record still being written
    records, offset = read_metrics(path, offset)
    assert [r["epoch"] for r in records] == [2] and records[0]["note"] == "ok"
    with open(path, "a") as fh:
        fh.write('ss": 0.1}\nnot json\n')
    records, _ = read_metrics(path, offset)
    assert records == [{"epoch": 3, "loss": 0.1}]
    assert read_metrics(tmp_path / "missing.jsonl", 7) == ([], 7)


def test_report_without_the_variable_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METRICS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    report(epoch=1, loss=1.0)
    assert list(tmp_path.iterdir()) == []
