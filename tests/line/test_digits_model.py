from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aifactory.core.errors import SpecError
from aifactory.line.digits_model import DigitsConfig, build_model, load_checkpoint, save_checkpoint


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = DigitsConfig(widths=(4, 8), hidden=16, dropout=0.0)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, {"epochs": 3, "dataset": "digits@1"})
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.config == cfg
    assert loaded.meta == {"epochs": 3, "dataset": "digits@1"}
    x = np.random.default_rng(0).uniform(0, 16, size=(5, 64))
    probs = loaded.predict_proba(x)
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        direct = torch.softmax(model(torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8)), dim=1).numpy()
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-6)
    assert (loaded.predict(x) == probs.argmax(axis=1)).all()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 63)),
        np.zeros(64),
        np.zeros((0, 64)),
        np.array([["a"] * 64]),
        [[0.0] * 64],
        np.full((1, 64), np.nan),
    ],
)
def test_predict_rejects_wrong_shape_or_type(tmp_path: Path, bad: object) -> None:
    cfg = DigitsConfig()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg), device="cpu")
    with pytest.raises(SpecError) as err:
        loaded.predict_proba(bad)  # type: ignore[arg-type]
    assert err.value.field == "inputs"


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    cfg = DigitsConfig()
    path = save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpecError, match="checkpoint"):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(SpecError, match=r"not a aifactory\.digits/1 checkpoint"):
        load_checkpoint(other)
    with pytest.raises(SpecError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_validation_names_the_field() -> None:
    with pytest.raises(SpecError) as err:
        DigitsConfig(dropout=1.5)
    assert err.value.field == "dropout"
    with pytest.raises(SpecError, match="unknown field"):
        DigitsConfig.from_dict({"widths": [4, 8], "depth": 3})
