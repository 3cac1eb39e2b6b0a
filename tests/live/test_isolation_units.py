"""The isolation pieces on their own: accounts from the [users] table, names made valid, the
cgroup files written for v1 and v2 (on a directory laid out as each hierarchy is), device rules
from /proc/devices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aifactory.core.job import JobSpec, Placement
from aifactory.live.cgroups import JobGroups, Limits, device_majors, gpu_device_rules
from aifactory.live.isolation import Isolation, IsolationError, unix_name


def test_unix_names_are_valid_and_distinct() -> None:
    assert unix_name("alice") == "aif-alice"
    odd = unix_name("Bob Smith@Example")
    assert odd.startswith("aif-bobsmithexample-") and len(odd) <= 32
    assert unix_name("BOB") != unix_name("bob")


def test_users_table_maps_accounts_and_never_to_root(tmp_path: Path) -> None:
    iso = Isolation("full", tmp_path, {"carol": "nobody", "mallory": "root", "ghost": "no-such-account-x"})
    assert iso.account("carol").uid == 65534
    with pytest.raises(IsolationError, match="root"):
        iso.account("mallory")
    with pytest.raises(IsolationError, match="no Unix account 'no-such-account-x'"):
        iso.account("ghost")
    iso.create_accounts = False
    with pytest.raises(IsolationError, match="aif-dave"):
        iso.account("dave")


def test_the_environment_is_built_not_inherited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "secret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    iso = Isolation("none", tmp_path)
    spec = JobSpec(command=("true",), env={"SEED": "1", "CUDA_VISIBLE_DEVICES": "7", "HOME": "/root"})
    launch = iso.prepare(3, spec, Placement((("node0", (1,)),)), {"CUDA_VISIBLE_DEVICES": "1"})
    env = launch.env
    assert "PGPASSWORD" not in env and env["LANG"] == "C.UTF-8" and env["SEED"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["HOME"] == str(tmp_path / "job-3") == env["TMPDIR"]
    assert (tmp_path / "job-3").stat().st_mode & 0o777 == 0o700


def test_device_rules_read_majors(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.write_text("Character devices:\n  1 mem\n195 nvidia-frontend\n508 nvidia-uvm\n\nBlock devices:\n  8 sd\n")
    majors = device_majors(devices)
    assert majors == {"mem": 1, "nvidia-frontend": 195, "nvidia-uvm": 508}
    rules = gpu_device_rules([2, 0], majors)
    assert rules == ["c 195:0 rwm", "c 195:2 rwm", "c 195:255 rwm", "c 195:254 rwm", "c 508:* rwm"]
    assert gpu_device_rules([], majors) == []  # no GPU: no NVIDIA device at all


def test_v1_groups_get_the_limits(tmp_path: Path) -> None:
    for controller in ("memory", "cpu", "devices", "pids"):
        (tmp_path / controller).mkdir()
    groups = JobGroups("aifactory-x", "v1", tmp_path)
    paths = groups.create("job-5", Limits(cpu_milli=1500, memory_mib=64, gpus=(1,), pids=100))
    assert {p.relative_to(tmp_path).parts[0] for p in paths} == {"memory", "cpu", "devices", "pids"}
    job = Path("aifactory-x") / "job-5"
    assert (tmp_path / "memory" / job / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (tmp_path / "cpu" / job / "cpu.cfs_quota_us").read_text() == "150000"
    assert (tmp_path / "devices" / job / "devices.deny").read_text() == "a"
    assert (tmp_path / "pids" / job / "pids.max").read_text() == "100"
    # (a real devices.allow takes one rule per write; this file keeps the last)
    assert (tmp_path / "devices" / job / "devices.allow").read_text().startswith("c ")
    for path in paths:
        for f in path.iterdir():
            f.unlink()
    groups.remove("job-5")
    assert not any((tmp_path / c / job).exists() for c in ("memory", "cpu", "devices", "pids"))


def test_v2_group_gets_the_limits(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids")
    (tmp_path / "cgroup.subtree_control").write_text("")
    groups = JobGroups("aifactory-x", "v2", tmp_path)
    (path,) = groups.create("job-6", Limits(cpu_milli=500, memory_mib=128, pids=10))
    assert path == tmp_path / "aifactory-x" / "job-6"
    assert (path / "memory.max").read_text() == str(128 << 20)
    assert (path / "cpu.max").read_text() == "50000 100000"
    assert (path / "pids.max").read_text() == "10"
    assert groups.level == "cgroup v2: cpu, memory (no device rule)"  # said plainly where devices are open


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, full isolation can be had")
def test_full_isolation_needs_root(tmp_path: Path) -> None:
    with pytest.raises(IsolationError, match="root"):
        Isolation.configure("full", tmp_path)


def test_a_jobs_scratch_goes_when_it_ends(tmp_path: Path) -> None:
    import asyncio
    import sys

    from aifactory.live.service import FactoryService
    from aifactory.live.settings import LiveSettings

    async def main() -> None:
        settings = LiveSettings(home=tmp_path / "home", gpus=1, isolation="none")
        async with await FactoryService.open(settings) as svc:
            code = "import os, pathlib; pathlib.Path(os.environ['TMPDIR'], 'big').write_text('x'); print(os.environ['HOME'])"
            row = await svc.submit(JobSpec(command=(sys.executable, "-c", code), gpus=1))
            done = await svc.wait(row.id, timeout=30)
            assert done.state.value == "succeeded"
            scratch = svc.isolation.scratch(row.id)
            assert svc.log_path(row.id).read_text().strip() == str(scratch)
            for _ in range(100):
                if not scratch.exists():
                    break
                await asyncio.sleep(0.05)
            assert not scratch.exists()

    asyncio.run(main())
