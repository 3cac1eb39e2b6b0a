"""Hot swap against the real registry: the watcher follows the alias and survives what goes wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aifactory.core.errors import NotFound
from aifactory.line.digits_model import DigitsConfig, build_model, save_checkpoint
from aifactory.line.registry import Registry
from aifactory.serve.swap import AliasWatcher, ModelSlot, RegistrySource, load_version

from .conftest import tiny_checkpoint


@pytest.fixture
def registry(home: Path) -> Registry:
    registry = Registry(home)
    for seed in range(2):
        torch.manual_seed(seed)
        cfg = DigitsConfig(widths=(4, 8), hidden=16)
        registry.register(
            "digits", save_checkpoint(home / f"s{seed}.pt", build_model(cfg), cfg, {}), {"seed": seed}, {}
        )
    registry.set_alias("digits", "champion", 1)
    return registry


def watcher_on(home: Path, ref: str = "digits@champion") -> AliasWatcher:
    source = RegistrySource(home)
    slot = ModelSlot(load_version(source, source.resolve(ref), warm_rows=4))
    return AliasWatcher(source, ref, slot, poll_s=0, warm_rows=4)


def test_follows_the_alias_and_rollback(home: Path, registry: Registry) -> None:
    watcher = watcher_on(home)
    x = np.full((3, 64), 5.0, dtype=np.float32)
    before, served = watcher.slot.run(x)
    assert served.version == 1 and served.metrics == {"seed": 0} and before.shape == (3, 10)
    assert watcher.check() is False  # nothing moved
    registry.set_alias("digits", "champion", 2)
    assert watcher.check() is True
    after, served = watcher.slot.run(x)
    assert served.version == 2 and not np.allclose(before, after)
    registry.rollback("digits", "champion")
    assert watcher.check() is True and watcher.slot.current.version == 1  # type: ignore[union-attr]
    assert watcher.slot.swaps == 2


def test_keeps_serving_when_the_alias_goes_or_the_checkpoint_is_bad(home: Path, registry: Registry) -> None:
    watcher = watcher_on(home)
    registry.unset_alias("digits", "champion")
    assert watcher.check() is False
    assert "champion" in (watcher.last_error or "")
    assert watcher.slot.current.version == 1  # type: ignore[union-attr]
    third = registry.register("digits", tiny_checkpoint(home / "third.pt", 3), {}, {})
    third.checkpoint_path.chmod(0o644)
    third.checkpoint_path.write_bytes(b"not a checkpoint at all")  # damaged in the store after registration
    registry.set_alias("digits", "champion", 3)
    assert watcher.check() is False
    assert "checkpoint" in (watcher.last_error or "")
    assert watcher.slot.run(np.zeros((1, 64), dtype=np.float32))[1].version == 1
    registry.set_alias("digits", "champion", 2)
    assert watcher.check() is True and watcher.last_error is None


def test_an_empty_slot_says_so() -> None:
    with pytest.raises(NotFound, match="no model"):
        ModelSlot().run(np.zeros((1, 64), dtype=np.float32))
