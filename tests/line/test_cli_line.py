"""The line's CLI, in-process through `aifactory.cli.main` (errors -> one line and exit code 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aifactory.cli import main
from aifactory.line.registry import Registry

from .conftest import tiny_checkpoint


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["aifactory", *args])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_datasets_create_list_show_and_bad_files(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", X=rng.uniform(0, 16, (30, 64)), y=rng.integers(0, 10, 30))
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "create", "table", "--file", str(tmp_path / "t.npz"))
    assert code == 0 and out.startswith("table@1  table  rows 30  features 64")
    code, out, _ = run_cli(monkeypatch, capsys, "datasets")
    assert code == 0 and "table" in out and "table@1" in out
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "show", "table@1")
    assert code == 0 and "rows 30" in out and "lineage" in out

    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,3\n4,5\n")
    code, _, err = run_cli(monkeypatch, capsys, "datasets", "create", "table", "--file", str(tmp_path / "bad.csv"))
    assert (
        code == 2 and "error: path: bad.csv: not a readable CSV file (CSV parse error: Expected 3 columns, got 2" in err
    )
    code, _, err = run_cli(monkeypatch, capsys, "datasets", "show", "tabel")
    assert code == 2 and "did you mean 'table'" in err
    code, _, err = run_cli(monkeypatch, capsys, "datasets", "create", "table")
    assert code == 2 and "exactly one of --file, --dir or --sklearn" in err
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "show", "table")
    assert "table@1" in out  # the failed imports made no version


def test_models_promote_rollback_show(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = Registry(home)
    for i in range(2):
        ckpt = tiny_checkpoint(tmp_path / f"{i}.pt", i)
        reg.register("digits", ckpt, {"holdout_accuracy": 0.9 + i / 100}, {"dataset": f"digits@{i + 1}"})
    assert (
        run_cli(monkeypatch, capsys, "models", "promote", "digits", "1")[1].strip() == "digits@champion: nothing -> v1"
    )
    assert run_cli(monkeypatch, capsys, "models", "promote", "digits", "2")[1].strip() == "digits@champion: v1 -> v2"
    code, out, _ = run_cli(monkeypatch, capsys, "models", "rollback", "digits")
    assert code == 0 and out.strip() == "digits@champion: v2 -> v1 (rolled back)"
    assert reg.aliases("digits") == {"champion": 1}
    code, out, _ = run_cli(monkeypatch, capsys, "models")
    assert code == 0 and "champion=v1" in out and "0.9100" in out
    code, out, _ = run_cli(monkeypatch, capsys, "models", "show", "digits")
    assert code == 0 and "alias history" in out and "rolled back from v2" in out
    code, out, _ = run_cli(monkeypatch, capsys, "models", "show", "digits@champion")
    assert code == 0 and '"dataset": "digits@1"' in out

    code, _, err = run_cli(monkeypatch, capsys, "models", "show", "digits@nightly")
    assert code == 2 and "unknown alias of model 'digits' 'nightly'" in err
    code, _, err = run_cli(monkeypatch, capsys, "models", "promote", "digitz", "1")
    assert code == 2 and "did you mean 'digits'" in err
    code, _, err = run_cli(monkeypatch, capsys, "models", "promote", "digits", "9")
    assert code == 2 and "no version 9" in err


def test_line_run_rejects_a_bad_pipeline_before_anything_runs(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\nsteps:\n  - {name: ingest, needs: [deploy]}\n  - {name: deploy, needs: [ingest]}\n")
    code, _, err = run_cli(monkeypatch, capsys, "line", "run", str(spec), "--on", "local")
    assert code == 2 and "error: steps: cycle: ingest -> deploy -> ingest" in err
    spec.write_text("name: p\nsteps:\n  - {name: ingest}\n  - {name: fit, needs: [ingest]}\n")
    code, _, err = run_cli(monkeypatch, capsys, "line", "run", str(spec), "--on", "local")
    assert code == 2 and "unknown step kind 'fit'" in err
    assert not (home / "runs").exists() and not (home / "factory.db").exists()


def test_line_flywheel_checks_then_absorbs_and_runs_the_pipeline(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aifactory.line.datasets import Datasets
    from aifactory.serve.feedback import LIVE, Answer, FeedbackLog

    ds = Datasets(home)
    ds.create("digits", np.zeros((10, 64)), np.arange(10))
    ds.create("digits-holdout", np.zeros((5, 64)), np.arange(5))
    log = FeedbackLog(home)
    probs = np.eye(10, dtype=np.float32)[[3]]
    for i in range(60):
        log.log([Answer(f"r{i}", LIVE, "digits", 1, np.full((1, 64), i % 17, np.float32), probs, 0.0)])
        log.add_feedback(f"r{i}", [3 if i % 2 else 4])
    spec = tmp_path / "p.yaml"
    spec.write_text("name: retrain\nmodel: digits\nsteps:\n  - {name: ingest, params: {dataset: digits}}\n")
    args = ("line", "flywheel", str(spec), "--on", "local", "--min-rows", "50")
    code, out, _ = run_cli(monkeypatch, capsys, *args, "--check")
    assert code == 0 and "trigger fires: live accuracy 0.500 over the last 60 labels < 0.9" in out
    assert [v.version for v in ds.versions("digits")] == [1]  # --check changed nothing
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "feedback absorbed: digits@2 (parent v1), holdout digits-holdout@2" in out
    assert (ds.get("digits").rows, ds.get("digits-holdout").rows) == (10 + 42, 5 + 18)
    assert "digits@2" in out  # the pipeline's ingest step ran on the new version
    code, out, _ = run_cli(monkeypatch, capsys, *args)
    assert "trigger quiet: 0 new labelled rows" in out


def test_datasets_of_any_shape_from_the_cli(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "houses.csv"
    csv.write_text("rooms,town,price\n3,Oslo,4.5\n2,Bergen,3.25\n4,Oslo,6.0\n")
    code, out, _ = run_cli(
        monkeypatch, capsys, "datasets", "create", "houses", "--file", str(csv), "--target", "price", "--json"
    )
    made = json.loads(out)
    assert code == 0 and made["schema"]["task"] == "regression" and made["schema"]["target"] == ["price"]
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "show", "houses")
    assert code == 0 and "schema (regression)" in out and "string" in out
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "part-0.txt").write_text("some text\n")
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "create", "corpus", "--dir", str(shards))
    assert code == 0 and out.startswith("corpus@1  files  rows 1")
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "show", "corpus")
    assert code == 0 and "files 1, 10 bytes; first: part-0.txt" in out
    code, _, err = run_cli(monkeypatch, capsys, "datasets", "create", "c", "--dir", str(shards), "--target", "x")
    assert code == 2 and err.startswith("error: target:")
    code, _, err = run_cli(monkeypatch, capsys, "datasets", "create", "c", "--file", str(csv), "--task", "ranking")
    assert code == 2 and err.startswith("error: task:")


def test_a_dataset_made_by_hand_is_split_once_by_the_ingest_step(home: Path) -> None:
    """`datasets create digits --sklearn digits`, then a pipeline whose ingest names digits: no missing holdout."""
    from aifactory.line.datasets import Datasets
    from aifactory.line.kinds import ingest

    ds = Datasets(home)
    ds.create_from_sklearn("digits", "digits")
    out = ingest({"dataset": "digits", "source": "sklearn:digits", "holdout_fraction": 0.2}, {})
    assert (out["dataset"], out["holdout"], out["rows"]) == ("digits@2", "digits-holdout@1", 1438)
    assert ds.get("digits-holdout").rows == 359 and ds.get("digits", 2).parent == 1
    again = ingest({"dataset": "digits", "source": "sklearn:digits"}, {})
    assert (again["dataset"], again["holdout"]) == ("digits@2", "digits-holdout@1")  # split once only


def test_models_show_says_when_scores_were_measured_on_different_holdouts(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = Registry(home)
    for i, (score, holdout) in enumerate([(0.96, "digits-holdout@1"), (0.92, "digits-holdout@2")]):
        ckpt = tiny_checkpoint(tmp_path / f"h{i}.pt", i)
        reg.register("digits", ckpt, {"holdout_accuracy": score}, {}, measured_on={"holdout_accuracy": holdout})
    code, out, _ = run_cli(monkeypatch, capsys, "models", "show", "digits")
    assert code == 0 and out.index("0.9200 on digits-holdout@2") < out.index("0.9600 on digits-holdout@1")
    assert "measured on different holdouts" in " ".join(out.split())
    code, out, _ = run_cli(monkeypatch, capsys, "models", "promote", "digits", "1", "--json")
    assert code == 0 and json.loads(out)["version"] == 1
    run_cli(monkeypatch, capsys, "models", "promote", "digits", "2", "champion")
    code, out, _ = run_cli(monkeypatch, capsys, "models", "rollback", "digits", "champion")
    assert code == 0 and out.strip() == "digits@champion: v2 -> v1 (rolled back)"
    code, _, err = run_cli(monkeypatch, capsys, "models", "rollback", "digits", "champion", "--alias", "stable")
    assert code == 2 and "two aliases" in err
    code, out, _ = run_cli(monkeypatch, capsys, "models", "show", "digits@1", "--json")
    assert code == 0 and json.loads(out)["measured_on"] == {"holdout_accuracy": "digits-holdout@1"}
