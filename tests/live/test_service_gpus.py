"""GPU discovery: no NVML (this CI box) is a normal case; a fake NVML stands in for a GPU box."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from aifactory.live import gpus
from aifactory.live.gpus import GpuInfo, discover
from aifactory.live.service import build_cluster
from aifactory.live.settings import LiveSettings


class FakeNvml(types.ModuleType):
    """pynvml's surface as the driver would answer on a two-GPU box (the system boundary)."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        super().__init__("pynvml")
        self.fail_init = fail_init
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes | str:
        return b"NVIDIA H100 80GB HBM3" if handle == 0 else "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=81559 * 1024 * 1024)

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-{handle:04d}"


def test_discover_on_this_machine_does_not_crash() -> None:
    found = discover()
    assert isinstance(found, list)
    assert all(isinstance(g, GpuInfo) and g.memory_mib > 0 for g in found)


def test_no_nvml_library_or_driver_is_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert discover() == []
    fake = FakeNvml(fail_init=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert discover() == []
    assert fake.shutdowns == 0


def test_gpus_listed_and_nvml_shut_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert discover() == [
        GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, "GPU-0000"),
        GpuInfo(1, "NVIDIA H100 80GB HBM3", 81559, "GPU-0001"),
    ]
    assert fake.shutdowns == 1
    [node] = build_cluster(LiveSettings(home=tmp_path, gpus=None))
    assert (node.gpu_count, node.gpu_model, node.gpu_memory_mib) == (2, "NVIDIA H100 80GB HBM3", 81559)


def test_virtual_gpus_win_over_discovery(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gpus, "discover", lambda: pytest.fail("discovery must not run with gpus=N"))
    nodes = list(build_cluster(LiveSettings(home=tmp_path, gpus=4, nodes=2)))
    assert [(n.name, n.gpu_count, n.gpu_model) for n in nodes] == [("node0", 4, "virtual"), ("node1", 4, "virtual")]


def test_settings_defaults_follow_aifactory_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path / "h"))
    s = LiveSettings()
    assert s.home == tmp_path / "h"
    assert s.database_url == f"sqlite:///{tmp_path / 'h' / 'factory.db'}"
    assert (s.logs_dir, s.token_path, s.server_file) == (s.home / "logs", s.home / "token", s.home / "server.json")
    assert (s.policy, s.placement, s.nodes, s.host, s.port, s.kill_grace_s) == (
        "fairshare",
        "pack",
        1,
        "127.0.0.1",
        8470,
        10,
    )
    core = s.core()  # the live defaults are the core's defaults
    assert (core.policy, core.min_runtime_s, core.preempt_grace_s) == ("fairshare", 60.0, 30.0)
    assert (s.min_runtime_s, s.preempt_grace_s) == (core.min_runtime_s, core.preempt_grace_s)
    monkeypatch.delenv("AIFACTORY_HOME")
    assert LiveSettings().home == Path.home() / ".aifactory"
