"""The model registry: models, numbered versions with metrics and lineage, and aliases.

A version's checkpoint is copied into the artifact store (content-addressed), so the
registry owns the file it points to. Aliases (`champion`, `challenger`, ...) are pointers
to versions; every move is kept in the alias history, and `rollback` moves an alias back
to where it was before its latest move that has not been rolled back already.

References: `digits@champion` (an alias), `digits@3` (a version), `digits` (the
champion if there is one, else the latest version).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from aifactory.core.errors import NotFound, SpecError, UnknownName
from aifactory.line import db
from aifactory.line import home as default_home
from aifactory.line.artifacts import ArtifactStore
from aifactory.line.signature import Signature, digits_signature

if TYPE_CHECKING:
    from aifactory.line.flavours import Predictor

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    checkpoint_path: Path
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    created_at: float  # Unix seconds
    sha256: str = ""
    flavour: str = "digits"
    signature: Signature | None = None
    measured_on: dict[str, str] = field(default_factory=dict)  # metric -> the dataset version it was measured on

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    def predictor(self) -> Predictor:
        """The model loaded by its flavour, ready to answer."""
        from aifactory.line.flavours import load

        return load(self.flavour, self.checkpoint_path, self.signature)

    @property
    def input_signature(self) -> Signature:
        if self.signature is not None:
            return self.signature
        if self.flavour == "digits":
            return digits_signature()
        raise SpecError("signature", f"{self.ref} has no signature")


@dataclass(frozen=True)
class AliasChange:
    model: str
    alias: str
    version: int
    previous: int | None
    kind: str  # "set" or "rollback"
    reason: str
    at: float
    id: int = 0


@dataclass(frozen=True)
class GateDecision:
    model: str
    challenger: int
    champion: int | None
    metric: str
    challenger_score: float
    champion_score: float | None
    margin: float
    holdout: str  # dataset ref of the frozen holdout both were scored on
    promoted: bool
    reason: str
    at: float = field(default=0.0)
    higher_is_better: bool = True


def check_name(field_name: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SpecError(field_name, f"{name!r} is not a valid name (letter, then letters, digits, _ . -)")
    return name


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`digits@champion` -> ("digits", "champion"); `digits` -> ("digits", None)."""
    name, sep, tag = ref.partition("@")
    check_name("model", name)
    if sep and not tag:
        raise SpecError("model", f"{ref!r}: nothing after '@'")
    return name, tag or None


class Registry:
    def __init__(self, home: Path | None = None, url: str | None = None) -> None:
        self.home = default_home(home)
        self.engine = db.open_engine(self.home, url)
        self.store = ArtifactStore(self.home / "artifacts")

    # -- versions --------------------------------------------------------------------

    def register(
        self,
        model: str,
        checkpoint_path: Path,
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        flavour: str = "digits",
        signature: Signature | None = None,
        measured_on: dict[str, str] | None = None,
    ) -> ModelVersion:
        """Store the model file and record it as the next version of `model`.

        It must load as its flavour and answer its signature's shape (checked on one zero row),
        so a version the server cannot serve never gets a number.
        """
        from aifactory.line.flavours import FLAVOURS, load

        check_name("model", model)
        if flavour not in FLAVOURS:
            raise UnknownName("flavour", flavour, FLAVOURS)
        measured_on = dict(measured_on or {})
        if unknown := sorted(set(measured_on) - set(metrics)):
            raise SpecError("measured_on", f"names metric(s) {', '.join(unknown)} that are not in the metrics")
        predictor = load(flavour, Path(checkpoint_path), signature)
        width = signature.width if signature is not None else digits_signature().width
        try:
            predictor.predict(np.zeros((1, width), dtype=np.float32))
        except SpecError:
            raise
        except Exception as exc:  # the model's own code refuses the signature's rows
            raise SpecError("model", f"{checkpoint_path} does not answer rows of {width} inputs: {exc}") from None
        sha = self.store.put_file(Path(checkpoint_path))
        stored = self.store.get(sha)
        now = time.time()
        t = db.model_versions
        with self.engine.begin() as conn:
            db.write_lock(conn, f"model:{model}")
            last = conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.model == model)).scalar()
            version = (last or 0) + 1
            conn.execute(
                t.insert().values(
                    model=model,
                    version=version,
                    checkpoint_path=str(stored),
                    sha256=sha,
                    metrics=json.dumps(metrics, sort_keys=True),
                    lineage=json.dumps(lineage, sort_keys=True, default=str),
                    created_at=now,
                    flavour=flavour,
                    signature=signature.model_dump_json() if signature is not None else None,
                    measured_on=json.dumps(measured_on, sort_keys=True),
                )
            )
        return ModelVersion(
            model, version, stored, dict(metrics), dict(lineage), now, sha, flavour, signature, measured_on
        )

    def models(self) -> list[str]:
        t = db.model_versions
        with self.engine.begin() as conn:
            return list(conn.execute(sa.select(t.c.model).distinct().order_by(t.c.model)).scalars())

    def versions(self, model: str) -> list[ModelVersion]:
        t = db.model_versions
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(t).where(t.c.model == model).order_by(t.c.version)).all()
        if not rows:
            raise UnknownName("model", model, self.models())
        return [_version(r) for r in rows]

    def get(self, model: str, version: int) -> ModelVersion:
        t = db.model_versions
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.model == model, t.c.version == int(version))).first()
        if row is None:
            known = [str(v.version) for v in self.versions(model)]
            raise NotFound(f"model {model!r} has no version {version} (versions: {', '.join(known)})")
        return _version(row)

    def latest(self, model: str) -> ModelVersion:
        return self.versions(model)[-1]

    def resolve(self, ref: str) -> ModelVersion:
        model, tag = parse_ref(ref)
        if tag is None:
            current = self.aliases(model)
            return self.get(model, current[CHAMPION]) if CHAMPION in current else self.latest(model)
        if tag.isdigit():
            return self.get(model, int(tag))
        current = self.aliases(model)
        if tag not in current:
            raise UnknownName(f"alias of model {model!r}", tag, current)
        return self.get(model, current[tag])

    # -- aliases ---------------------------------------------------------------------

    def aliases(self, model: str) -> dict[str, int]:
        """alias -> version for `model`; UnknownName if the model has no version at all."""
        t = db.aliases
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(t.c.alias, t.c.version).where(t.c.model == model)).all()
        if not rows:
            self.versions(model)  # raises for an unknown model
        return {r.alias: r.version for r in rows}

    def alias_version(self, model: str, alias: str) -> int | None:
        """The version `alias` points to, or None (cheap: what a server polls for hot swap)."""
        t = db.aliases
        with self.engine.begin() as conn:
            return conn.execute(sa.select(t.c.version).where(t.c.model == model, t.c.alias == alias)).scalar()

    def set_alias(self, model: str, alias: str, version: int, reason: str = "") -> AliasChange:
        check_name("alias", alias)
        if alias.isdigit():
            raise SpecError("alias", f"{alias!r}: an alias cannot be a number (that names a version)")
        self.get(model, version)
        return self._move(model, alias, int(version), "set", reason or "set by user")

    def unset_alias(self, model: str, alias: str) -> None:
        t = db.aliases
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.model == model, t.c.alias == alias))

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasChange]:
        t = db.alias_history
        query = sa.select(t).where(t.c.model == model)
        if alias is not None:
            query = query.where(t.c.alias == alias)
        with self.engine.begin() as conn:
            rows = conn.execute(query.order_by(t.c.id)).all()
        return [AliasChange(r.model, r.alias, r.version, r.previous, r.kind, r.reason, r.at, r.id) for r in rows]

    def rollback(self, model: str, alias: str, reason: str = "") -> AliasChange:
        """Move `alias` back to the version it held before its latest move not yet rolled back."""
        stack: list[AliasChange] = []
        for change in self.alias_history(model, alias):
            if change.kind == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append(change)
        if not stack:
            raise NotFound(f"alias {alias!r} of model {model!r} has no move to roll back")
        undone = stack[-1]
        if undone.previous is None:
            raise NotFound(f"alias {alias!r} of model {model!r} pointed nowhere before version {undone.version}")
        return self._move(model, alias, undone.previous, "rollback", reason or f"rolled back from v{undone.version}")

    def _move(self, model: str, alias: str, version: int, kind: str, reason: str) -> AliasChange:
        now = time.time()
        t, h = db.aliases, db.alias_history
        with self.engine.begin() as conn:
            db.write_lock(conn, f"alias:{model}:{alias}")
            prev = conn.execute(sa.select(t.c.version).where(t.c.model == model, t.c.alias == alias)).scalar()
            if prev is None:
                conn.execute(t.insert().values(model=model, alias=alias, version=version, updated_at=now))
            else:
                conn.execute(
                    t.update().where(t.c.model == model, t.c.alias == alias).values(version=version, updated_at=now)
                )
            key = conn.execute(
                h.insert().values(
                    model=model, alias=alias, version=version, previous=prev, kind=kind, reason=reason, at=now
                )
            ).inserted_primary_key
            assert key is not None  # an INSERT always has one
        return AliasChange(model, alias, version, prev, kind, reason, now, int(key[0]))

    # -- gate decisions --------------------------------------------------------------

    def record_decision(self, decision: GateDecision) -> GateDecision:
        values = {k: getattr(decision, k) for k in GateDecision.__dataclass_fields__}
        values["at"] = decision.at or time.time()
        with self.engine.begin() as conn:
            conn.execute(db.gate_decisions.insert().values(**values))
        return GateDecision(**values)

    def decisions(self, model: str) -> list[GateDecision]:
        t = db.gate_decisions
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(t).where(t.c.model == model).order_by(t.c.id)).all()
        return [GateDecision(**{k: getattr(r, k) for k in GateDecision.__dataclass_fields__}) for r in rows]


def _version(row: sa.Row[Any]) -> ModelVersion:
    return ModelVersion(
        model=row.model,
        version=row.version,
        checkpoint_path=Path(row.checkpoint_path),
        metrics=json.loads(row.metrics),
        lineage=json.loads(row.lineage),
        created_at=row.created_at,
        sha256=row.sha256,
        flavour=row.flavour or "digits",
        signature=Signature.model_validate_json(row.signature) if row.signature else None,
        measured_on=json.loads(row.measured_on or "{}"),
    )
