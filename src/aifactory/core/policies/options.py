"""Policy settings by name: each policy declares the `FactorySettings` fields it reads (`options`),
and an operator sets them as `NAME=VALUE` (`aifactory up --policy-opt`, `aifactory twin run
--policy-opt`, or the factory's config file). An unknown name gets the list of the policy's
own; a bad value gets an error naming the option. Nothing is applied unless all are valid."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from aifactory.core.errors import SpecError, UnknownName
from aifactory.core.settings import FactorySettings

# The kind of each tunable field, its unit and the least value it may take.
KINDS: dict[str, tuple[type, str, float]] = {
    "min_runtime_s": (float, "s", 0.0),
    "preempt_grace_s": (float, "s", 0.0),
    "reclaim_retry_s": (float, "s", 0.001),
    "half_life_s": (float, "s", 0.0),
    "history_weight": (float, "", 0.0),
    "backfill_depth": (int, "jobs", 1),
    "las_thresholds_gpu_s": (tuple, "GPU-s, comma-separated, increasing", 0.0),
}


def options_of(policy: str) -> tuple[str, ...]:
    """The settings `policy` reads, by name (UnknownName for a policy the registry lacks)."""
    from aifactory.core.policies import POLICIES

    try:
        factory = POLICIES[policy]
    except KeyError:
        raise UnknownName("policy", policy, POLICIES) from None
    return tuple(getattr(factory, "options", ()))


def parse_value(name: str, text: str) -> Any:
    """One option's value from its text, checked (SpecError naming `policy_opt.NAME`)."""
    kind, unit, least = KINDS[name]
    field = f"policy_opt.{name}"
    try:
        if kind is tuple:
            value: Any = tuple(float(v) for v in text.split(",") if v.strip())
            numbers = list(value)
        else:
            value = kind(text)
            numbers = [value]
    except ValueError:
        raise SpecError(field, f"not a {unit or kind.__name__} value: {text!r}") from None
    if not numbers or any(not (n >= least) or n != n or n == float("inf") for n in numbers):
        raise SpecError(field, f"must be {least:g} or more ({unit}), got {text!r}")
    if kind is tuple and list(value) != sorted(set(value)):
        raise SpecError(field, f"must increase, got {text!r}")
    return value


def apply_options(settings: FactorySettings, given: Iterable[str]) -> FactorySettings:
    """`settings` with each `NAME=VALUE` of `given` set, for the settings' policy."""
    known = options_of(settings.policy)
    given = list(given)
    if given and not known:
        raise SpecError("policy_opt", f"policy {settings.policy} has no options (given: {', '.join(given)})")
    changes: dict[str, Any] = {}
    for item in given:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise SpecError("policy_opt", f"expected NAME=VALUE, got {item!r}")
        if name not in known:
            raise UnknownName(f"option of policy {settings.policy}", name, known)
        changes[name] = parse_value(name, text.strip())
    return replace(settings, **changes) if changes else settings
