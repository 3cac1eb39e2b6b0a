"""A minimal DDP job: every worker contributes its rank to an all_reduce (gloo, CPU), trains one
step of a tiny model under DistributedDataParallel, and prints what it saw.

    aifactory submit --gpus 4 --multi-node -- sh -c 'torchrun --nnodes=$NNODES --node_rank=$NODE_RANK \\
        --nproc_per_node=$LOCAL_WORLD_SIZE --master_addr=$MASTER_ADDR --master_port=$MASTER_PORT examples/ddp_gloo.py'
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    value = torch.tensor([float(rank)])
    dist.all_reduce(value)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()  # gradients averaged across every worker
    node = os.environ.get("AIFACTORY_NODE", "?")
    # One write for the whole line: workers of one node share a pipe, and under PYTHONUNBUFFERED a
    # print() is two writes (text, then newline), so two workers' lines could interleave (seen in CI).
    line = f"all_reduce rank={rank} node={node} sum={value.item()} world={world}\n"
    os.write(sys.stdout.fileno(), line.encode())
    # Every worker reaches the end before any tears gloo down: one leaving early can make a peer's
    # pending gloo operation abort (SIGABRT), seen here on a loaded 2-core box. A gloo barrier alone
    # is not enough (a worker can leave it while a peer still reads the barrier's last message), so
    # the workers also count themselves out through the rendezvous store (TCP, not gloo's sockets).
    dist.barrier()
    all_done(world)
    dist.destroy_process_group()


def all_done(world: int, timeout_s: float = 120.0) -> None:
    store = dist.distributed_c10d._get_default_store()
    store.add("examples/ddp_gloo/done", 1)
    deadline = time.monotonic() + timeout_s
    while store.add("examples/ddp_gloo/done", 0) < world and time.monotonic() < deadline:
        time.sleep(0.01)


if __name__ == "__main__":
    main()
