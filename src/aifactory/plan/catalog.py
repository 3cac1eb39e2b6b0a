"""The hardware catalogue: GPUs and systems from `catalog.toml`, overridable by the user.

Lookups accept the short forms people type (`V100`, `a100-80gb`, `H100`): names and aliases are
compared lower-case with punctuation removed. An unknown name raises `UnknownName` with a "did
you mean". User files (`$AIFACTORY_HOME/catalog.toml`, then `--catalog`) add entries or override
fields of existing ones; every field must have a source.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aifactory.config import resolve_home
from aifactory.core.errors import SpecError, UnknownName

PRECISIONS = ("fp8", "bf16", "fp16", "fp32")


class _GpuFields(BaseModel):
    """Schema of one `[gpus.NAME]` table after merging; positive numbers only."""

    model_config = ConfigDict(extra="forbid")
    aliases: list[str] = []
    generation: str
    year: int | None = None
    bf16_dense_tflops: float | None = Field(None, gt=0)
    fp16_dense_tflops: float | None = Field(None, gt=0)
    fp8_dense_tflops: float | None = Field(None, gt=0)
    fp32_tflops: float | None = Field(None, gt=0)
    memory_gb: float = Field(gt=0)
    memory_bw_gbs: float = Field(gt=0)
    nvlink_gbs: float | None = Field(None, gt=0)
    pcie_gbs: float | None = Field(None, gt=0)
    tdp_w: float = Field(gt=0)
    measured_power_w: float | None = Field(None, gt=0)
    idle_w: float | None = Field(None, gt=0)  # measured idle power (e.g. fitted by `aifactory twin calibrate`)
    sources: dict[str, str]


class _CpuFields(BaseModel):
    """Schema of one `[cpus.NAME]` table: one socket."""

    model_config = ConfigDict(extra="forbid")
    aliases: list[str] = []
    year: int | None = None
    cores: int = Field(gt=0)
    clock_ghz: float = Field(gt=0)
    fp32_tflops: float = Field(gt=0)
    memory_bw_gbs: float = Field(gt=0)
    tdp_w: float = Field(gt=0)
    sources: dict[str, str]


class _SystemFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    aliases: list[str] = []
    gpu: str
    gpus: int = Field(gt=0)
    year: int | None = None
    rated_kw: float | None = Field(None, gt=0)
    measured_peak_training_kw: float | None = Field(None, gt=0)
    price_usd: float | None = Field(None, gt=0)
    sources: dict[str, str]


@dataclass(frozen=True, slots=True)
class Gpu:
    """One accelerator. TFLOPS dense, memory in GB (1e9 B), bandwidth in GB/s, power in W."""

    name: str
    generation: str
    memory_gb: float
    memory_bw_gbs: float
    tdp_w: float
    tflops: dict[str, float]  # precision -> dense peak TFLOPS
    aliases: tuple[str, ...] = ()
    year: int | None = None
    nvlink_gbs: float | None = None
    pcie_gbs: float | None = None
    measured_power_w: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    idle_w: float | None = None

    def peak_tflops(self, precision: str = "bf16") -> float:
        """Dense peak at `precision`; BF16 falls back to FP16 on GPUs without BF16 (P100, V100)."""
        if precision == "bf16" and "bf16" not in self.tflops and "fp16" in self.tflops:
            return self.tflops["fp16"]
        if precision not in self.tflops:
            have = ", ".join(sorted(self.tflops)) or "none"
            raise SpecError("precision", f"{self.name} has no {precision} tensor peak (has: {have})")
        return self.tflops[precision]

    @property
    def power_w(self) -> float:
        """Training power per GPU: the published average measured in training where there is one, else TDP."""
        return self.measured_power_w if self.measured_power_w is not None else self.tdp_w

    def source(self, key: str) -> str:
        return self.sources.get(key, self.sources.get("default", ""))


@dataclass(frozen=True, slots=True)
class Cpu:
    """One CPU socket: its FP32 vector peak and power (what `plan compare` sets beside GPUs)."""

    name: str
    cores: int
    clock_ghz: float
    fp32_tflops: float
    memory_bw_gbs: float
    tdp_w: float
    aliases: tuple[str, ...] = ()
    year: int | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, key: str) -> str:
        return self.sources.get(key) or self.sources.get("default", "")


@dataclass(frozen=True, slots=True)
class System:
    """A box of `gpus` x `gpu` (a DGX); aggregate figures are the GPU's times `gpus`."""

    name: str
    gpu: Gpu
    gpus: int
    aliases: tuple[str, ...] = ()
    year: int | None = None
    rated_kw: float | None = None
    measured_peak_training_kw: float | None = None
    price_usd: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def peak_tflops(self, precision: str = "bf16") -> float:
        return self.gpus * self.gpu.peak_tflops(precision)

    @property
    def memory_gb(self) -> float:
        return self.gpus * self.gpu.memory_gb


def _key(name: str) -> str:
    """Lookup key: lower case, letters and digits only (`A100-80GB` == `a100_80gb`)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


class UnknownGpu(UnknownName):
    """An unknown GPU or system; the "did you mean" compares normalised names and aliases."""

    def __init__(self, name: str, index: dict[str, str], names: list[str]) -> None:
        super().__init__("gpu", name, names)
        close = difflib.get_close_matches(_key(name), list(index), n=1, cutoff=0.6)
        hint = f"; did you mean {index[close[0]]!r}?" if close else ""
        self.args = (f"unknown gpu {name!r}{hint} (known: {', '.join(sorted(names))})",)


@dataclass(frozen=True, slots=True)
class Catalog:
    """All GPUs and systems, with mixed-case/alias lookup and default MFU by generation."""

    gpus: dict[str, Gpu]
    systems: dict[str, System]
    mfu_by_generation: dict[str, float]
    mfu_sources: dict[str, str]
    cpus: dict[str, Cpu] = field(default_factory=dict)
    power: dict[str, Any] = field(default_factory=dict)  # the twin's power model: [power] and its sources

    def cpu(self, name: str) -> Cpu:
        """A CPU socket by any of its names."""
        index = {_key(alias): c.name for c in self.cpus.values() for alias in (c.name, *c.aliases)}
        canonical = index.get(_key(name))
        if canonical is None:
            raise UnknownName("cpu", name, list(self.cpus))
        return self.cpus[canonical]

    def is_cpu(self, name: str) -> bool:
        return any(_key(name) in (_key(c.name), *map(_key, c.aliases)) for c in self.cpus.values())

    def _index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        entries: list[Gpu | System] = [*self.gpus.values(), *self.systems.values()]
        for entry in entries:
            for alias in (entry.name, *entry.aliases):
                index.setdefault(_key(alias), entry.name)
        return index

    def resolve(self, name: str) -> Gpu | System:
        """A GPU or a system by any of its names."""
        index = self._index()
        canonical = index.get(_key(name))
        if canonical is None:
            raise UnknownGpu(name, index, [*self.gpus, *self.systems])
        return self.gpus.get(canonical) or self.systems[canonical]

    def gpu(self, name: str) -> Gpu:
        """A GPU by name; a system name gives its GPU."""
        found = self.resolve(name)
        return found.gpu if isinstance(found, System) else found

    def default_mfu(self, gpu: Gpu) -> float:
        return self.mfu_by_generation.get(gpu.generation, 0.35)

    def as_dict(self) -> dict[str, Any]:
        """Every entry with its figures, default MFU and sources (what `plan gpus --json` prints)."""
        gpus = {
            n: {**g.tflops, "memory_gb": g.memory_gb, "memory_bw_gbs": g.memory_bw_gbs, "tdp_w": g.tdp_w,
                "measured_power_w": g.measured_power_w, "nvlink_gbs": g.nvlink_gbs, "pcie_gbs": g.pcie_gbs,
                "generation": g.generation, "year": g.year, "default_mfu": self.default_mfu(g),
                "aliases": list(g.aliases), "sources": g.sources}
            for n, g in self.gpus.items()
        }  # fmt: skip
        systems = {
            n: {"gpu": s.gpu.name, "gpus": s.gpus, "fp16_tflops": s.peak_tflops("fp16"), "memory_gb": s.memory_gb,
                "rated_kw": s.rated_kw, "measured_peak_training_kw": s.measured_peak_training_kw,
                "price_usd": s.price_usd, "aliases": list(s.aliases), "sources": s.sources}
            for n, s in self.systems.items()
        }  # fmt: skip
        cpus = {
            n: {"cores": c.cores, "clock_ghz": c.clock_ghz, "fp32_tflops": c.fp32_tflops, "tdp_w": c.tdp_w,
                "memory_bw_gbs": c.memory_bw_gbs, "year": c.year, "aliases": list(c.aliases), "sources": c.sources}
            for n, c in self.cpus.items()
        }  # fmt: skip
        return {
            "gpus": gpus,
            "systems": systems,
            "cpus": cpus,
            "mfu": self.mfu_by_generation,
            "mfu_sources": self.mfu_sources,
        }


def _merge(base: dict[str, Any], extra: dict[str, Any], where: str) -> None:
    """Field-by-field override of `[gpus.X]`/`[systems.X]`/`[mfu]` tables from a user file."""
    for section, entries in extra.items():
        if section not in ("gpus", "systems", "cpus", "mfu", "power"):
            raise SpecError(f"{where}: {section}", "unknown section (expected gpus, systems, cpus, mfu or power)")
        if not isinstance(entries, dict):
            raise SpecError(f"{where}: {section}", "must be a table")
        target = base.setdefault(section, {})
        names = {
            _key(alias): n for n, f in target.items() if isinstance(f, dict) for alias in (n, *f.get("aliases", []))
        }
        for given_name, fields in entries.items():
            name = names.get(_key(given_name), given_name)  # `[gpus.v100]` overrides V100-SXM2
            if section in ("mfu", "power") and not isinstance(fields, dict):
                target[name] = fields  # a plain value: idle_fraction = 0.15
                continue
            if section != "mfu" and not isinstance(fields, dict):
                raise SpecError(f"{section}.{name}", f"must be a table, got {fields!r}")
            if section != "mfu" and not isinstance(fields.get("sources", {}), dict):
                raise SpecError(f"{section}.{name}.sources", "must be a table of field = source")
            if isinstance(fields, dict) and isinstance(target.get(name), dict):
                # An overridden field without a source of its own is attributed to the user's file.
                given = {k: f"user catalogue {where}" for k in fields if k not in ("aliases", "sources")}
                merged = {**target[name], **fields}
                merged["sources"] = {**target[name].get("sources", {}), **given, **fields.get("sources", {})}
                target[name] = merged
            else:
                target[name] = fields


def _check_sources(kind: str, name: str, fields: Any) -> None:
    """Every field has a source: its own in `sources`, or `sources.default`."""
    if not isinstance(fields, dict):
        raise SpecError(f"{kind}.{name}", f"must be a table, got {fields!r}")
    sources = fields.get("sources", {})
    if not isinstance(sources, dict):
        raise SpecError(f"{kind}.{name}.sources", f"must be a table of field = source, got {sources!r}")
    if "default" in sources:
        return
    missing = [k for k in fields if k not in ("aliases", "sources", "generation", "gpu") and k not in sources]
    if missing:
        raise SpecError(f"{kind}.{name}.sources", f"no source for {', '.join(missing)} (add sources.default)")


Fields = TypeVar("Fields", bound=BaseModel)


def _validated(kind: str, name: str, raw: dict[str, Any], schema: type[Fields]) -> Fields:
    """One catalogue table checked: every field sourced, every value in range; SpecError naming the field."""
    _check_sources(kind, name, raw)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SpecError(f"{kind}.{name}.{'.'.join(map(str, err['loc']))}", err["msg"]) from None


def _gpu_from(name: str, raw: dict[str, Any]) -> Gpu:
    f = _validated("gpus", name, raw, _GpuFields)
    tflops = {p: getattr(f, f"{p}_dense_tflops" if p != "fp32" else "fp32_tflops") for p in PRECISIONS}
    return Gpu(
        name=name,
        generation=f.generation,
        memory_gb=f.memory_gb,
        memory_bw_gbs=f.memory_bw_gbs,
        tdp_w=f.tdp_w,
        tflops={p: v for p, v in tflops.items() if v is not None},
        aliases=tuple(f.aliases),
        year=f.year,
        nvlink_gbs=f.nvlink_gbs,
        pcie_gbs=f.pcie_gbs,
        measured_power_w=f.measured_power_w,
        sources=f.sources,
        idle_w=f.idle_w,
    )


def _cpu_from(name: str, raw: dict[str, Any]) -> Cpu:
    f = _validated("cpus", name, raw, _CpuFields)
    return Cpu(name, f.cores, f.clock_ghz, f.fp32_tflops, f.memory_bw_gbs, f.tdp_w, tuple(f.aliases), f.year, f.sources)


def _system_from(name: str, raw: dict[str, Any], gpus: dict[str, Gpu]) -> System:
    f = _validated("systems", name, raw, _SystemFields)
    index = {_key(alias): g.name for g in gpus.values() for alias in (g.name, *g.aliases)}
    if _key(f.gpu) not in index:
        raise UnknownGpu(f.gpu, index, list(gpus))
    return System(
        name=name,
        gpu=gpus[index[_key(f.gpu)]],
        gpus=f.gpus,
        aliases=tuple(f.aliases),
        year=f.year,
        rated_kw=f.rated_kw,
        measured_peak_training_kw=f.measured_peak_training_kw,
        price_usd=f.price_usd,
        sources=f.sources,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError("catalog", f"no such file: {path}")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError("catalog", f"{path} is not valid TOML: {exc}") from None


def user_catalog_paths(extra: Path | None = None) -> list[Path]:
    """User files merged over the packaged catalogue, in order: `$AIFACTORY_HOME/catalog.toml`, then `extra`."""
    home = resolve_home()
    # What `aifactory twin calibrate` fitted from this factory's telemetry, then the user's own file.
    paths = [home / name for name in ("calibrated.toml", "catalog.toml") if (home / name).is_file()]
    return paths + ([extra] if extra is not None else [])


def load_catalog(extra: Path | None = None) -> Catalog:
    """The packaged catalogue with the user's files merged over it."""
    raw = tomllib.loads(resources.files("aifactory.plan").joinpath("catalog.toml").read_text())
    for path in user_catalog_paths(extra):
        _merge(raw, _read_toml(path), str(path))
    gpus = {name: _gpu_from(name, fields) for name, fields in raw.get("gpus", {}).items()}
    systems = {name: _system_from(name, fields, gpus) for name, fields in raw.get("systems", {}).items()}
    mfu = dict(raw.get("mfu", {}))
    mfu_sources = mfu.pop("sources", {})
    for gen, value in mfu.items():
        if not isinstance(value, int | float) or not 0 < value <= 1:
            raise SpecError(f"mfu.{gen}", f"must be a fraction in (0, 1], got {value!r}")
    cpus = {name: _cpu_from(name, fields) for name, fields in raw.get("cpus", {}).items()}
    power = dict(raw.get("power", {}))
    return Catalog(gpus=gpus, systems=systems, mfu_by_generation=mfu, mfu_sources=mfu_sources, cpus=cpus, power=power)
