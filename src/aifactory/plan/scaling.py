"""Scaling laws: L(N, D) = E + A / N^alpha + B / D^beta with training compute C = 6 N D.

Loss in nats per token, N parameters, D training tokens. The compute-optimal split minimises L at fixed
C (Hoffmann et al. 2022, Approach 3), in closed form:
    N_opt = G * (C/6)^(beta/(alpha+beta)),  G = (alpha*A / (beta*B))^(1/(alpha+beta)),  D_opt = C / (6 N_opt).
At that optimum alpha*A/N^alpha = beta*B/D^beta, which inverts `budget`: the least compute reaching a loss.
The inference-aware optimum (Sardana et al. 2024, "Beyond Chinchilla-Optimal") minimises lifetime compute
6 N D + 2 N D_inf (training plus serving D_inf tokens) for a target loss; it trains a smaller model longer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aifactory.core.errors import SpecError, UnknownName


@dataclass(frozen=True, slots=True)
class ScalingLaw:
    """The constants of one published fit of L(N, D)."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str

    def loss(self, params: float, tokens: float) -> float:
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta


FITS: dict[str, ScalingLaw] = {
    "chinchilla": ScalingLaw(
        "chinchilla", 1.69, 406.4, 410.7, 0.34, 0.28, "Hoffmann et al. 2022, Training Compute-Optimal LLMs, eq. 10"
    ),
    "epoch": ScalingLaw(
        "epoch",
        1.8172,
        482.01,
        2085.43,
        0.3478,
        0.3658,
        "Besiroglu et al. 2024, Chinchilla Scaling: A replication attempt (arXiv 2404.10102)",
    ),
}


def get_fit(name: str) -> ScalingLaw:
    try:
        return FITS[name.lower()]
    except KeyError:
        raise UnknownName("scaling fit", name, FITS) from None


@dataclass(frozen=True, slots=True)
class LawPoint:
    """A model size and training length with what it costs (FLOP) and the loss it reaches (nats/token)."""

    params: float
    tokens: float
    loss: float
    train_flops: float
    inference_flops: float = 0.0

    @property
    def lifetime_flops(self) -> float:
        return self.train_flops + self.inference_flops

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


def optimal(law: ScalingLaw, flops: float) -> LawPoint:
    """The compute-optimal N, D and predicted loss at `flops` training FLOPs."""
    if not flops > 0:
        raise SpecError("flops", f"must be > 0, got {flops}")
    a, b = law.alpha, law.beta
    g = (a * law.A / (b * law.B)) ** (1 / (a + b))
    params = g * (flops / 6) ** (b / (a + b))
    tokens = flops / (6 * params)
    return LawPoint(params, tokens, law.loss(params, tokens), flops)


def budget(law: ScalingLaw, target_loss: float) -> LawPoint:
    """The least training compute that reaches `target_loss`, and its compute-optimal N and D."""
    gap = target_loss - law.E
    if not gap > 0:
        raise SpecError("target-loss", f"must exceed the irreducible loss E={law.E} of the {law.name} fit")
    a, b = law.alpha, law.beta
    params = (law.A * (a + b) / (b * gap)) ** (1 / a)
    tokens = (law.B * (a + b) / (a * gap)) ** (1 / b)
    return LawPoint(params, tokens, law.loss(params, tokens), 6 * params * tokens)


def _tokens_for(law: ScalingLaw, target_loss: float, params: float) -> float:
    """Training tokens a model of `params` needs to reach `target_loss` (inf if it never does)."""
    room = target_loss - law.E - law.A / params**law.alpha
    return (law.B / room) ** (1 / law.beta) if room > 0 else math.inf


def inference_aware(law: ScalingLaw, target_loss: float, inference_tokens: float) -> LawPoint:
    """Minimise 6 N D + 2 N D_inf subject to L(N, D) = target_loss (Sardana et al. 2024)."""
    from scipy.optimize import minimize_scalar

    if not inference_tokens >= 0:
        raise SpecError("inference-tokens", f"must be >= 0, got {inference_tokens}")
    train_opt = budget(law, target_loss)
    if inference_tokens == 0:
        return train_opt
    # The smallest model that can reach the loss at all (infinite data); the optimum lies between it
    # and the training-optimal size, since serving cost only ever pushes N down.
    n_min = (law.A / (target_loss - law.E)) ** (1 / law.alpha)

    def lifetime(log_n: float) -> float:
        n = math.exp(log_n)
        return 6 * n * _tokens_for(law, target_loss, n) + 2 * n * inference_tokens

    res = minimize_scalar(
        lifetime, bounds=(math.log(n_min) + 1e-9, math.log(train_opt.params)), method="bounded", options={"xatol": 1e-6}
    )
    params = math.exp(res.x)
    tokens = _tokens_for(law, target_loss, params)
    return LawPoint(params, tokens, law.loss(params, tokens), 6 * params * tokens, 2 * params * inference_tokens)
