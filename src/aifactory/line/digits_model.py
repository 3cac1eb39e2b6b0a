"""The digits classifier: a small CNN on scikit-learn's 8x8 digit images (AlexNet in miniature).

Inputs are rows of 64 pixel values in 0..16 (the `load_digits` scale); the model divides
by `pixel_max` itself, so callers never pre-scale. The checkpoint carries the config, so
`load_checkpoint(path)` rebuilds the model from the file alone (what serving needs).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aifactory.atomic import atomic_file
from aifactory.core.errors import SpecError

PIXELS = 64  # 8x8 image, flattened row-major
SIDE = 8
CHECKPOINT_FORMAT = "aifactory.digits/1"


@dataclass(frozen=True)
class DigitsConfig:
    """Architecture of the CNN; saved inside every checkpoint."""

    widths: tuple[int, int] = (16, 32)  # channels of the two conv layers
    hidden: int = 64  # units of the dense layer
    dropout: float = 0.1
    classes: int = 10
    pixel_max: float = 16.0  # inputs are divided by this inside the model

    def __post_init__(self) -> None:
        if len(self.widths) != 2 or any(w < 1 for w in self.widths):
            raise SpecError("widths", f"need two positive channel counts, got {self.widths}")
        if self.hidden < 1:
            raise SpecError("hidden", f"must be positive, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.pixel_max <= 0:
            raise SpecError("pixel_max", f"must be positive, got {self.pixel_max}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DigitsConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError("config", f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = dict(data)
        if "widths" in values:
            values["widths"] = tuple(int(w) for w in values["widths"])
        return cls(**values)


class DigitsCNN(nn.Module):
    def __init__(self, cfg: DigitsConfig) -> None:
        super().__init__()
        c1, c2 = cfg.widths
        self.scale = 1.0 / cfg.pixel_max
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),  # (B, c1, 8, 8)
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),  # (B, c2, 8, 8)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c2, 4, 4)
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 16, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.classes),  # logits (B, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 8, 8) raw pixels in 0..pixel_max -> logits (B, classes)."""
        return self.head(self.features(x * self.scale))


def build_model(cfg: DigitsConfig | None = None) -> nn.Module:
    return DigitsCNN(cfg or DigitsConfig())


def save_checkpoint(path: Path, model: nn.Module, cfg: DigitsConfig, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + config + `extra` (JSON-able metadata) atomically to `path`."""
    path = Path(path)
    meta = dict(extra or {})
    blob = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(asdict(cfg)),
        "meta": json.dumps(meta, sort_keys=True, default=str),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, mode=0o600) as fh:
        torch.save(blob, fh)
    return path


@dataclass
class LoadedModel:
    """A model rebuilt from its checkpoint, ready to answer (eval mode, no gradients)."""

    model: nn.Module
    config: DigitsConfig
    meta: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """x: (B, 64) pixels in 0..16 -> class probabilities (B, 10), float32."""
        batch = check_inputs(x)
        with torch.inference_mode():
            t = torch.from_numpy(batch).to(self.device).view(-1, 1, SIDE, SIDE)
            probs = torch.softmax(self.model(t), dim=1)
        return probs.cpu().numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x: (B, 64) -> predicted class per row (B,), int64."""
        return self.predict_proba(x).argmax(axis=1)


def check_inputs(x: object) -> np.ndarray:
    """Validate a batch of inputs; returns it as a contiguous float32 (B, 64) array."""
    if not isinstance(x, np.ndarray):
        raise SpecError("inputs", f"expected a numpy array of shape (B, {PIXELS}), got {type(x).__name__}")
    if x.dtype.kind not in "biuf":
        raise SpecError("inputs", f"expected numbers, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != PIXELS or x.shape[0] < 1:
        raise SpecError("inputs", f"expected shape (B, {PIXELS}) with B >= 1, got {tuple(x.shape)}")
    out = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(out).all():
        raise SpecError("inputs", "contains NaN or infinity")
    return out


def pick_device() -> torch.device:
    """The job's GPU when the executor gave it one (CUDA_VISIBLE_DEVICES) and CUDA works, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def load_checkpoint(path: Path, device: torch.device | str | None = None) -> LoadedModel:
    """Rebuild the model from `path` alone; SpecError("checkpoint") if the file is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("checkpoint", f"no such file: {path}")
    try:
        blob = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on a truncated or foreign file
        raise SpecError("checkpoint", f"{path} is not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise SpecError("checkpoint", f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    cfg = DigitsConfig.from_dict(json.loads(blob["config"]))
    dev = torch.device(device) if device is not None else pick_device()
    model = build_model(cfg)
    model.load_state_dict(blob["state_dict"])
    model.to(dev).eval()
    return LoadedModel(model=model, config=cfg, meta=json.loads(blob["meta"]), device=dev)
