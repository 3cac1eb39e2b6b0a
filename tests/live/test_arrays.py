"""Job arrays through the real CLI and server: `--array 0-5%2` makes one array whose elements see
their index, at most two run at once, `jobs` shows it as one row (`--expand`: each element),
`show`/`cancel`/`hold` take the array or one element (`A_I`), a YAML file may give parameter sets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifactory.live.api.launch import ServerProcess

from .test_cli import cli, ok, refused, wait_state


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("arrays") / "home", "--gpus", "4") as srv:
        yield srv


def test_an_array_with_a_cap(server: ServerProcess, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = f'echo "$AIFACTORY_ARRAY_ID $AIFACTORY_ARRAY_INDEX"; touch {marks}/$AIFACTORY_ARRAY_INDEX; sleep 1'
    array_id = int(ok(cli(server, "submit", "-q", "--array", "0-5%2", "--", "sh", "-c", script)))
    elements = json.loads(ok(cli(server, "show", str(array_id), "--json")))
    assert [e["array_index"] for e in elements] == [0, 1, 2, 3, 4, 5]
    most = 0
    deadline = time.monotonic() + 60
    while True:
        states = [e["state"] for e in json.loads(ok(cli(server, "show", str(array_id), "--json")))]
        most = max(most, states.count("running"))
        if all(s == "succeeded" for s in states):
            break
        assert time.monotonic() < deadline, states
    assert most <= 2  # the cap; 4 GPUs were free
    assert sorted(p.name for p in marks.iterdir()) == [str(i) for i in range(6)]
    third = elements[3]
    log = ok(cli(server, "logs", str(third["id"])))
    assert log == f"{array_id} 3\n"
    table = ok(cli(server, "jobs", "--all"))
    assert sum(1 for line in table.splitlines() if "[6: 0-5]" in line) == 1 and "6 succeeded" in table
    expanded = ok(cli(server, "jobs", "--all", "--expand"))
    assert sum(1 for line in expanded.splitlines()[1:] if line.strip()) == 6
    shown = json.loads(ok(cli(server, "show", f"{array_id}_3", "--json")))
    assert shown["id"] == third["id"] and shown["array_index"] == 3


def test_cancel_and_hold_an_array_or_one_element(server: ServerProcess, tmp_path: Path) -> None:
    array_id = int(ok(cli(server, "submit", "-q", "--array", "0-3%1", "--", "sleep", "30")))
    wait_state(server, array_id, {"running"})
    ok(cli(server, "hold", f"{array_id}_3"))
    assert "held" in json.loads(ok(cli(server, "show", f"{array_id}_3", "--json")))["pending_reason"]
    out = ok(cli(server, "cancel", str(array_id)))
    assert "4 of 4 elements" in out
    for e in json.loads(ok(cli(server, "show", str(array_id), "--json"))):
        wait_state(server, e["id"], {"cancelled"})
    refused(cli(server, "show", f"{array_id}_9"), "no element 9")
    refused(cli(server, "submit", "--array", "5-1", "--", "true"), "array")
    # A YAML file with one parameter set per element.
    job = tmp_path / "sweep.yaml"
    job.write_text("command: sh -c 'echo lr=$LR'\narray_params:\n  - {LR: '0.1'}\n  - {LR: '0.01'}\n")
    sweep = int(ok(cli(server, "submit", "-q", str(job))))
    logs = []
    for e in json.loads(ok(cli(server, "show", str(sweep), "--json"))):
        wait_state(server, e["id"], {"succeeded"})
        logs.append(ok(cli(server, "logs", str(e["id"]))))
    assert logs == ["lr=0.1\n", "lr=0.01\n"]
