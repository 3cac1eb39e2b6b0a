"""How a Ray node becomes a floor node: its GPUs as NVML saw them on the node, else as Ray and
the node's labels declare them (no cluster needed)."""

from __future__ import annotations

from aifactory.live.executors.ray import node_spec
from aifactory.live.gpus import GpuInfo

INFO = {
    "NodeID": "0123456789abcdef",
    "Alive": True,
    "Resources": {"GPU": 4.0, "CPU": 16.0, "memory": 64 << 30, "accelerator_type:A100": 1.0},
    "Labels": {},
}


def test_nvml_on_the_node_gives_count_model_and_memory() -> None:
    gpus = [GpuInfo(i, "NVIDIA H100 80GB HBM3", 81559, f"GPU-{i}") for i in range(8)]
    spec = node_spec(INFO | {"Labels": {"aifactory/node": "gpu-07", "aifactory/rack": "r2"}}, gpus)
    # Ray was told 4 GPUs: the floor hands out no more than Ray would (indices 0-3).
    assert (spec.name, spec.gpu_count, spec.gpu_model, spec.gpu_memory_mib) == ("gpu-07", 4, gpus[0].model, 81559)
    assert (spec.cpu_milli, spec.memory_mib, spec.rack, spec.pool) == (16000, 64 << 10, "r2", "default")


def test_without_nvml_ray_and_labels_declare_virtual_gpus() -> None:
    plain = node_spec(INFO, [])
    assert (plain.name, plain.gpu_count, plain.gpu_model, plain.gpu_memory_mib) == ("01234567", 4, "A100", 0)
    labels = {"aifactory/gpu-model": "T4", "aifactory/gpu-memory-mib": "15360", "aifactory/pool": "inference"}
    labelled = node_spec(INFO | {"Labels": labels}, [])
    assert (labelled.gpu_model, labelled.gpu_memory_mib, labelled.pool) == ("T4", 15360, "inference")
    bad = node_spec(INFO | {"Labels": {"aifactory/gpu-memory-mib": "lots"}}, [])
    assert bad.gpu_memory_mib == 0  # an unreadable label is unknown, not an error that stops the server
