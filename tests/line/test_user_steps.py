"""Steps of the user's own: shell commands and entry points with declared inputs and outputs, cached by content."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from aifactory.core.errors import SpecError
from aifactory.line.datasets import Datasets
from aifactory.line.executors import LocalExecutor
from aifactory.line.pipeline import load_pipeline, parse_pipeline, validate
from aifactory.line.runner import PipelineRunner, RunResult, StepFailed

PIPELINE = """
name: toy
model: toy
steps:
  - name: prepare
    command: "printf '%s' {params.greeting} > {dir}/greeting.txt && echo prepared"
    params: {greeting: "hello; rm -rf /"}
    outputs: [greeting.txt]
    gpus: 0.1
  - name: count
    needs: [prepare]
    entry: steps.py:count
    inputs: {text: prepare.greeting.txt, data: "dataset:toy"}
    params: {times: 3}
    gpus: 0.1
"""

STEPS = """
from pathlib import Path
from aifactory.line import step

def count(params, inputs):
    text = Path(inputs["text"]).read_text()
    x, y = step.dataset("data")
    step.metric(letters=len(text) * params["times"])
    return {"rows": len(y), "data": inputs["data"]}
"""


def _run(path: Path, home: Path) -> RunResult:
    return asyncio.run(PipelineRunner(LocalExecutor(), home).run(load_pipeline(path)))


def test_command_and_entry_steps_with_inputs_outputs_and_the_cache(home: Path, tmp_path: Path) -> None:
    Datasets(home).create("toy", np.ones((5, 2)), np.arange(5) % 2)
    spec = tmp_path / "toy.yaml"
    spec.write_text(PIPELINE)
    (tmp_path / "steps.py").write_text(STEPS)
    first = _run(spec, home)
    prepared = first.outputs["prepare"]
    assert Path(prepared["greeting.txt"]).read_text() == "hello; rm -rf /"  # quoted: the shell ran no rm
    assert prepared["greeting.txt"].startswith(str(home / "artifacts")) and len(prepared["greeting.txt_sha256"]) == 64
    assert first.outputs["count"] == {"letters": 45, "rows": 5, "data": "toy@1"}
    assert first.cached == []
    step_file = json.loads((home / "runs" / f"{first.run_id:05d}" / "count" / "step.json").read_text())
    assert step_file["inputs"]["data_sha256"] == Datasets(home).get("toy").sha256

    assert _run(spec, home).cached == ["prepare", "count"]  # nothing changed: both reused
    (tmp_path / "steps.py").write_text(STEPS.replace('params["times"]', 'params["times"] * 2'))
    again = _run(spec, home)
    assert again.cached == ["prepare"] and again.outputs["count"]["letters"] == 90  # its code changed
    Datasets(home).append("toy", np.zeros((1, 2)), np.array([1]))
    moved = _run(spec, home)
    assert moved.cached == ["prepare"] and moved.outputs["count"]["data"] == "toy@2"  # its input data changed


def test_a_missing_declared_output_or_placeholder_fails_the_step(home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\nsteps:\n  - {name: a, command: 'true', outputs: {model: model.bin}, gpus: 0.1}\n")
    with pytest.raises(StepFailed, match="declared output 'model'"):
        _run(spec, home)
    spec.write_text("name: p\nsteps:\n  - {name: a, command: 'echo {params.nope}', gpus: 0.1}\n")
    with pytest.raises(SpecError, match=r"\{params.nope\}"):
        _run(spec, home)
    spec.write_text("name: p\nsteps:\n  - {name: a, command: 'exit 3', gpus: 0.1}\n")
    with pytest.raises(StepFailed, match="exit code 3"):
        _run(spec, home)


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"name": "a", "command": "true", "entry": "m:f"}], "steps[0].command"),
        ([{"name": "a", "kind": "train", "command": "true"}], "steps[0].command"),
        ([{"name": "a", "kind": "command"}], "steps[0].command"),
        ([{"name": "a", "command": "true", "outputs": ["../escape"]}], "steps[0].outputs"),
        ([{"name": "a", "command": "true", "inputs": {"x": "nowhere"}}], "steps[0].inputs.x"),
        (
            [{"name": "a", "command": "true"}, {"name": "b", "command": "true", "inputs": {"x": "a.out"}}],
            "steps.b.inputs.x",
        ),
        ([{"name": "a", "kind": "sculpt"}], "steps[0].kind"),
    ],
)
def test_bad_user_steps_are_refused_before_anything_runs(steps: list[dict[str, object]], field: str) -> None:
    with pytest.raises(SpecError) as err:
        validate(parse_pipeline({"name": "p", "steps": steps}))
    assert err.value.field == field


def test_a_step_cannot_make_the_runner_store_a_file_outside_its_folder(home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "server-token"
    secret.write_text("s3cret")
    (tmp_path / "evil.py").write_text(
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "folder, how, secret = Path(os.environ['AIFACTORY_STEP_DIR']), sys.argv[1], sys.argv[2]\n"
        "if how == 'link-output':\n"
        "    (folder / 'model.bin').symlink_to(secret)\n"
        "elif how == 'point-elsewhere':\n"
        "    (folder / 'outputs.json').write_text(json.dumps({'checkpoint': secret}))\n"
        "else:\n"
        "    (folder / 'outputs.json').symlink_to(secret)\n"
    )
    spec = tmp_path / "p.yaml"
    for how in ("link-output", "point-elsewhere", "link-outputs-file"):
        outputs = "    outputs: {model: model.bin}\n" if how == "link-output" else ""
        spec.write_text(
            f"name: p\nsteps:\n  - name: a\n    gpus: 0.1\n{outputs}    command: python evil.py {how} {secret}\n"
        )
        with pytest.raises(StepFailed, match=r"link|outside"):
            _run(spec, home)
    stored = [p.read_bytes() for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert b"s3cret" not in stored
