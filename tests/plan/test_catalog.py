"""The hardware catalogue: published figures, names people type, user overrides, bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aifactory.core.errors import SpecError, UnknownName
from aifactory.plan.catalog import Catalog, System, load_catalog

REQUIRED = ["P100-SXM2", "V100-SXM2", "A100-SXM-40GB", "A100-SXM-80GB", "H100-SXM", "H100-PCIe", "H200-SXM", "B200-HGX"]


def test_catalogue_has_the_required_entries_each_with_sources(catalog: Catalog) -> None:
    for name in REQUIRED:
        gpu = catalog.gpus[name]
        assert gpu.memory_gb > 0 and gpu.memory_bw_gbs > 0 and gpu.tdp_w > 0 and gpu.tflops
        assert gpu.source("memory_gb"), name
    assert {"DGX-1", "DGX-H100"} <= set(catalog.systems)


def test_dgx1_is_170_fp16_tflops(catalog: Catalog) -> None:
    dgx1 = catalog.resolve("DGX-1")
    assert isinstance(dgx1, System) and dgx1.gpus == 8 and dgx1.gpu.name == "P100-SXM2"
    assert dgx1.peak_tflops("fp16") == pytest.approx(170, rel=0.01)


def test_catalogue_matches_published_datasheet_figures(catalog: Catalog, published: dict[str, Any]) -> None:
    for name, ref in published["gpus"].items():
        gpu = catalog.gpu(name)
        for key, value in ref.items():
            if key.endswith("_dense_tflops"):
                assert gpu.tflops[key.split("_")[0]] == pytest.approx(value), (name, key)
            elif key in ("memory_gb", "memory_bw_gbs", "tdp_w", "nvlink_gbs"):
                assert getattr(gpu, key) == pytest.approx(value), (name, key)
    dgx = catalog.resolve("DGX-H100")
    ref = published["systems"]["DGX-H100"]
    assert isinstance(dgx, System)
    assert (dgx.gpus, dgx.rated_kw, dgx.measured_peak_training_kw) == (ref["gpus"], ref["rated_kw"], 8.4)


@pytest.mark.parametrize(
    ("typed", "name"),
    [("V100", "V100-SXM2"), ("a100-80gb", "A100-SXM-80GB"), ("H100", "H100-SXM"), ("A100_40GB", "A100-SXM-40GB"),
     ("dgx h100", "H100-SXM"), ("B200", "B200-HGX")],
)  # fmt: skip
def test_short_and_mixed_case_names(catalog: Catalog, typed: str, name: str) -> None:
    assert catalog.gpu(typed).name == name


def test_typo_gets_did_you_mean(catalog: Catalog) -> None:
    with pytest.raises(UnknownName, match=r"did you mean 'H100-SXM'"):
        catalog.gpu("H10O")


def test_bf16_falls_back_to_fp16_where_there_is_no_bf16_and_fp8_is_refused(catalog: Catalog) -> None:
    assert catalog.gpu("V100").peak_tflops("bf16") == 125
    with pytest.raises(SpecError, match="precision: V100-SXM2 has no fp8"):
        catalog.gpu("V100").peak_tflops("fp8")


def test_home_catalogue_overrides_a_field_and_extra_file_adds_a_gpu(home: Path, tmp_path: Path) -> None:
    (home / "catalog.toml").write_text(
        '[gpus.H100-SXM]\nmemory_gb = 96\nsources = { memory_gb = "my lab" }\n[gpus.V100]\ntdp_w = 250\n'
    )
    extra = tmp_path / "mine.toml"
    extra.write_text(
        '[gpus.X1]\naliases = ["x-one"]\ngeneration = "hopper"\nbf16_dense_tflops = 100\nmemory_gb = 10\n'
        'memory_bw_gbs = 100\ntdp_w = 50\n[gpus.X1.sources]\ndefault = "test"\n'
    )
    cat = load_catalog(extra)
    h100 = cat.gpu("H100")
    assert h100.memory_gb == 96 and h100.source("memory_gb") == "my lab"
    assert h100.tflops["bf16"] == 989.4 and h100.source("bf16_dense_tflops").startswith("NVIDIA")  # kept
    v100 = cat.gpus["V100-SXM2"]  # `[gpus.V100]`: an alias names the entry it stands for
    assert v100.tdp_w == 250 and v100.source("tdp_w") == f"user catalogue {home / 'catalog.toml'}"
    assert "V100" not in cat.gpus
    assert cat.gpu("X-ONE").peak_tflops() == 100 and cat.default_mfu(cat.gpu("x1")) == 0.40


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[gpus.H100-SXM]\nmemory_gb = -1\n", r"gpus\.H100-SXM\.memory_gb"),
        ('[gpus.Y]\ngeneration = "x"\nmemory_gb = 1\nmemory_bw_gbs = 1\ntdp_w = 1\n', r"gpus\.Y\.sources"),
        ("[things.Z]\na = 1\n", "unknown section"),
        ("[gpus.H100-SXM\n", "not valid TOML"),
        ("[gpus]\nX = 5\n", r"gpus\.X: must be a table"),
        ('[gpus.H100-SXM]\nsources = "me"\n', r"gpus\.H100-SXM\.sources"),
        ('[gpus.H100-SXM]\nmemory_gb = "lots"\n', r"gpus\.H100-SXM\.memory_gb"),
        ('[systems.DGX-1]\ngpu = "P200"\n', "did you mean 'P100-SXM2'"),
        ("[mfu]\nhopper = 2\n", r"mfu\.hopper"),
    ],
)
def test_bad_user_catalogue_names_the_field(home: Path, tmp_path: Path, text: str, match: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises((SpecError, UnknownName), match=match):
        load_catalog(bad)


def test_missing_user_catalogue_file(home: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_catalog(tmp_path / "absent.toml")
