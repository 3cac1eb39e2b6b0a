"""A tiny character-level transformer trained on the Python docs in the stdlib (`pydoc_data.topics`).

One run per process, so a sweep can put each on the factory floor as its own job:

    python -m aifactory.plan.charlm --config '{"d_model": 32, "n_layer": 2, "tokens": 200000}' --out run.json

The result JSON carries the config, the parameter count, the training compute 6 N D and the final
validation loss (nats per character). N counts the transformer blocks plus the output head (tied with
the token embedding, so counted once); the position embedding does no matmul and is left out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from aifactory.atomic import write_atomic
from aifactory.core.errors import SpecError

VAL_FRACTION = 0.1  # the last 10 % of the text is held out


@dataclass(frozen=True, slots=True)
class CharLMConfig:
    """One training run. `tokens` is the training budget in characters; lr is AdamW's peak."""

    d_model: int = 32
    n_layer: int = 2
    n_head: int = 2
    seq_len: int = 64
    batch: int = 16
    tokens: int = 100_000
    lr: float = 3e-3
    seed: int = 0
    eval_windows: int = 256  # held-out windows of seq_len characters, the same for every run
    threads: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = (int, float) if f.name == "lr" else int
            if isinstance(value, bool) or not isinstance(value, kind):
                raise SpecError(f.name, f"must be {'a number' if f.name == 'lr' else 'an integer'}, got {value!r}")
            if not value > 0 and f.name != "seed":
                raise SpecError(f.name, f"must be > 0, got {value}")
        if self.d_model % self.n_head:
            raise SpecError("n_head", f"must divide d_model={self.d_model}, got {self.n_head}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CharLMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SpecError(unknown[0], f"unknown config field (known: {', '.join(sorted(known))})")
        return cls(**raw)

    @property
    def steps(self) -> int:
        return max(1, self.tokens // (self.batch * self.seq_len))


def corpus() -> str:
    """About 465k characters of Python documentation, in a fixed order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


def _model(cfg: CharLMConfig, vocab: int) -> Any:
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
            self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
            self.proj = nn.Linear(cfg.d_model, cfg.d_model)
            self.mlp = nn.Sequential(
                nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, c = x.shape  # (B, T, C)
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, cfg.n_head, c // cfg.n_head).transpose(1, 2) for z in (q, k, v))  # (B, H, T, C/H)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
            x = x + self.proj(y)
            return x + self.mlp(self.ln2(x))

    class CharLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(vocab, cfg.d_model)
            self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
            self.blocks = nn.Sequential(*(Block() for _ in range(cfg.n_layer)))
            self.ln = nn.LayerNorm(cfg.d_model)
            for module in self.modules():  # GPT-2's init: with a tied head, N(0, 1) embeddings start at ~8 nats
                if isinstance(module, nn.Linear | nn.Embedding):
                    nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))  # (B, T, C)
            return self.ln(self.blocks(x)) @ self.tok.weight.T  # (B, T, vocab), head tied to the embedding

    return CharLM()


def _lr(cfg: CharLMConfig, step: int) -> float:
    """Linear warm-up over the first 10 % of steps, then cosine decay to 10 % of the peak."""
    warm = max(1, cfg.steps // 10)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))


def train(cfg: CharLMConfig) -> dict[str, Any]:
    """Train one model and return its result record (see the module docstring)."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    text = corpus()
    chars = sorted(set(text))
    data = _encode(text, chars)
    split = int(len(data) * (1 - VAL_FRACTION))
    train_data, val_data = data[:split], data[split:]
    model = _model(cfg, len(chars))
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("pos."))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        ix = torch.randint(len(train_data) - cfg.seq_len - 1, (cfg.batch,), generator=gen)
        x = torch.stack([train_data[i : i + cfg.seq_len] for i in ix])  # (B, T)
        y = torch.stack([train_data[i + 1 : i + 1 + cfg.seq_len] for i in ix])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    val_loss = _evaluate(model, val_data, cfg)
    tokens = cfg.steps * cfg.batch * cfg.seq_len
    return {
        "config": asdict(cfg),
        "params": params,
        "tokens": tokens,
        "compute": 6.0 * params * tokens,
        "val_loss": val_loss,
        "train_loss": float(loss.item()),
        "seconds": time.perf_counter() - start,
    }


def _encode(text: str, chars: list[str]) -> Any:
    """Character ids as a LongTensor (N,), through code points (a Python loop over 465k chars is slow)."""
    import numpy as np
    import torch

    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.array([ord(ch) for ch in chars], dtype=np.uint32)  # sorted, so searchsorted is the index
    return torch.from_numpy(np.searchsorted(table, points).astype(np.int64))


def _evaluate(model: Any, val_data: Any, cfg: CharLMConfig) -> float:
    """Mean cross-entropy (nats/char) over evenly spaced held-out windows: the same ones for every run."""
    import torch
    from torch.nn import functional as F

    starts = torch.linspace(0, len(val_data) - cfg.seq_len - 2, cfg.eval_windows).long()
    model.eval()
    total = 0.0
    with torch.no_grad():
        for chunk in starts.split(64):
            x = torch.stack([val_data[i : i + cfg.seq_len] for i in chunk])  # (64, T)
            y = torch.stack([val_data[i + 1 : i + 1 + cfg.seq_len] for i in chunk])
            total += float(F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum").item())
    return total / (cfg.eval_windows * cfg.seq_len)


def _unwritable(out: Path) -> str:
    """Why the result cannot be written to `out`, or "" if it can."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {out.parent}: {exc.strerror}"
    return f"{out} is a directory" if out.is_dir() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aifactory.plan.charlm", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="JSON object of CharLMConfig fields")
    parser.add_argument("--out", required=True, type=Path, help="where to write the result JSON")
    args = parser.parse_args(argv)
    try:
        raw = json.loads(args.config)
        if not isinstance(raw, dict):
            raise SpecError("config", "must be a JSON object")
        cfg = CharLMConfig.from_dict(raw)
    except json.JSONDecodeError as exc:
        print(f"error: config: not valid JSON: {exc}", file=sys.stderr)
        return 2
    except (SpecError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = _unwritable(args.out)
    if problem:  # checked before training, so a bad path costs no compute
        print(f"error: out: {problem}", file=sys.stderr)
        return 2
    result = train(cfg)
    write_atomic(args.out, json.dumps(result, indent=2))  # the runner sees a whole file or none
    return 0


if __name__ == "__main__":
    sys.exit(main())
