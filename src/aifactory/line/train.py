"""The training workload: `python -m aifactory.line.train --dataset digits@2 --out model.pt`.

Trains the digits CNN on a dataset version, reports per-epoch metrics through
`aifactory.line.report`, and writes a checkpoint that carries its config and lineage.
Runs on the job's GPU when the executor gave it one (CUDA_VISIBLE_DEVICES), else on CPU.
The last line on stdout is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aifactory.atomic import write_atomic
from aifactory.core.errors import AifactoryError, SpecError
from aifactory.line.artifacts import ArtifactStore
from aifactory.line.digits_model import PIXELS, SIDE, DigitsConfig, build_model, pick_device, save_checkpoint
from aifactory.line.report import report


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 10
    lr: float = 3e-3  # Adam
    batch_size: int = 64
    val_fraction: float = 0.1  # held back from the training rows to report val accuracy per epoch
    seed: int = 0
    threads: int = 1  # torch CPU threads: the box this runs on is small and shared

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SpecError("epochs", f"must be at least 1, got {self.epochs}")
        if not self.lr > 0:
            raise SpecError("lr", f"must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise SpecError("batch_size", f"must be at least 1, got {self.batch_size}")
        if not 0 <= self.val_fraction < 1:
            raise SpecError("val_fraction", f"must be in [0, 1), got {self.val_fraction}")


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        return float((model(x).argmax(dim=1) == y).float().mean()) if len(y) else float("nan")


def train(
    x: np.ndarray, y: np.ndarray, cfg: DigitsConfig, params: TrainParams
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Fit the CNN on x (N, 64) pixels 0..16 and y (N,); returns the model and per-epoch history."""
    if x.ndim != 2 or x.shape[1] != PIXELS:
        raise SpecError("dataset", f"the digits CNN needs {PIXELS} features per row, got shape {x.shape}")
    torch.manual_seed(params.seed)
    torch.set_num_threads(params.threads)
    device = pick_device()
    rng = np.random.default_rng(params.seed)
    order = rng.permutation(len(y))
    n_val = int(len(y) * params.val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    images = torch.from_numpy(x.astype(np.float32)).view(-1, 1, SIDE, SIDE).to(device)  # (N, 1, 8, 8)
    labels = torch.from_numpy(y.astype(np.int64)).to(device)
    xt, yt, xv, yv = images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]
    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(1, params.epochs + 1):
        started = time.perf_counter()
        model.train()
        perm = torch.randperm(len(yt), device=device)
        total = 0.0
        for i in range(0, len(yt), params.batch_size):
            idx = perm[i : i + params.batch_size]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        row = {
            "loss": total / len(yt),
            "train_accuracy": accuracy(model, xt, yt),
            "val_accuracy": accuracy(model, xv, yv),
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        report(epoch=epoch, epochs=params.epochs, **row)
    return model.cpu().eval(), history


def environment() -> dict[str, str]:
    """Versions that decide what a run computes (recorded in every lineage)."""
    import platform
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": version("scikit-learn"),  # read from metadata: importing sklearn costs ~1 s
        "platform": platform.platform(terse=True),
    }


def _parse(argv: list[str]) -> tuple[argparse.Namespace, DigitsConfig, TrainParams]:
    p = argparse.ArgumentParser(prog="python -m aifactory.line.train", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="dataset ref, e.g. digits@2")
    p.add_argument("--out", required=True, type=Path, help="checkpoint file to write")
    p.add_argument("--home", type=Path, default=None, help="factory home (default: $AIFACTORY_HOME)")
    p.add_argument("--config", default="{}", help="DigitsConfig fields as JSON, e.g. '{\"widths\": [8, 16]}'")
    p.add_argument("--params", default="{}", help="TrainParams fields as JSON, e.g. '{\"epochs\": 5}'")
    p.add_argument("--summary", type=Path, default=None, help="also store the checkpoint; write step outputs here")
    args = p.parse_args(argv)
    try:
        cfg = DigitsConfig.from_dict(json.loads(args.config))
        raw = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise SpecError("config", f"not JSON: {exc}") from None
    known = set(TrainParams.__dataclass_fields__)
    if unknown := sorted(set(raw) - known):
        raise SpecError("params", f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return args, cfg, TrainParams(**raw)


def run(argv: list[str]) -> dict[str, Any]:
    from aifactory.line.datasets import Datasets

    args, cfg, params = _parse(argv)
    datasets = Datasets(args.home)
    version = datasets.resolve(args.dataset)
    x, y = datasets.load(version)
    started = time.perf_counter()
    model, history = train(x, y, cfg, params)
    summary = {
        "dataset": version.ref,
        "dataset_sha256": version.sha256,
        "params": asdict(params),
        "config": asdict(cfg),
        "device": str(pick_device()),
        "train_seconds": time.perf_counter() - started,
        "history": history,
        "environment": environment(),
    }
    save_checkpoint(args.out, model, cfg, summary)
    if args.summary is not None:
        _write_outputs(args.summary, datasets.store, args.out, summary)
    return summary


def _outputs(store: ArtifactStore, checkpoint: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The pipeline step's outputs: the checkpoint, now in the artifact store, and the final metrics."""
    from aifactory.line.signature import digits_signature

    sha = store.put_file(checkpoint)
    outputs = {
        "checkpoint": str(store.get(sha)),
        "checkpoint_sha256": sha,
        "flavour": "digits",
        "signature": digits_signature().model_dump(mode="json"),
        "device": summary["device"],
        "train_seconds": summary["train_seconds"],
        "environment": summary["environment"],
        **summary["history"][-1],
    }
    outputs.pop("seconds", None)
    return outputs


def _write_outputs(path: Path, store: ArtifactStore, checkpoint: Path, summary: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(_outputs(store, checkpoint, summary), sort_keys=True))


def step(params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The built-in `train` step (run by aifactory.line.entry): the digits CNN on input `dataset`."""
    from aifactory.line import step as helper

    out = helper.folder() / "model.pt"
    config = json.dumps(params.get("config", {}))
    rest = json.dumps({k: v for k, v in params.items() if k != "config"})
    home = helper.home()
    argv = ["--home", str(home), "--dataset", str(inputs["dataset"]), "--out", str(out)]
    summary = run([*argv, "--config", config, "--params", rest])
    return _outputs(ArtifactStore(home / "artifacts"), out, summary)


def main(argv: list[str] | None = None) -> int:
    try:
        summary = run(sys.argv[1:] if argv is None else argv)
    except AifactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = summary["history"][-1]
    print(json.dumps({"dataset": summary["dataset"], "device": summary["device"], **last}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
