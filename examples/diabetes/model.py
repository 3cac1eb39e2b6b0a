"""The diabetes regressor: a small MLP that standardises its own inputs and target.

The scaling is part of the module (buffers), so the served model takes the raw columns and
answers in the target's own units. Kept in its own module: the registry stores this source
with the weights, and the server rebuilds the class from it.
"""

from __future__ import annotations

import torch
from torch import nn


class Regressor(nn.Module):
    def __init__(self, features: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.register_buffer("x_mean", torch.zeros(features))
        self.register_buffer("x_std", torch.ones(features))
        self.register_buffer("y_mean", torch.zeros(1))
        self.register_buffer("y_std", torch.ones(1))

    def fit_scaling(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(x.std(0).clamp_min(1e-6))
        self.y_mean.copy_(y.mean().reshape(1))
        self.y_std.copy_(y.std().clamp_min(1e-6).reshape(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, features) raw -> (B, 1) in the target's units."""
        return self.net((x - self.x_mean) / self.x_std) * self.y_std + self.y_mean
