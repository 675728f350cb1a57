"""Plan files (TOML): their tables read into a PlanSpec, each key checked and named by its place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from optimizer.catalog import read_toml
from optimizer.errors import InputError
from optimizer.models import is_builtin_model
from optimizer.planning.spec import Commitment, PlanModel, PlanSpec, Pool

_MODEL_KEYS = set(PlanModel.__dataclass_fields__)
_POOL_KEYS = set(Pool.__dataclass_fields__)
_COMMITMENT_KEYS = set(Commitment.__dataclass_fields__)
_PLAN_KEYS = set(PlanSpec.__dataclass_fields__)


def _table(where: str, value: Any, keys: set[str], required: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a table, got {value!r}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise InputError(f"{where} has unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(keys))}")
    for key in required:
        if key not in value:
            raise InputError(f"{where} lacks {key!r}")
    return value


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def _model_from_dict(k: int, data: Any) -> PlanModel:
    m = dict(_table(f"models[{k}]", data, _MODEL_KEYS, ("model", "demand_qps", "slo_ms")))
    for key in ("weights", "kv"):
        if key in m:
            m[key] = _strings(f"models[{k}].{key}", m[key])
    if isinstance(m["demand_qps"], list):
        m["demand_qps"] = tuple(m["demand_qps"])
    return PlanModel(**m)


def _pool_from_dict(k: int, data: Any) -> Pool:
    q = dict(_table(f"pools[{k}]", data, _POOL_KEYS, ("chip", "quota_chips")))
    if "shapes" in q:
        q["shapes"] = _strings(f"pools[{k}].shapes", q["shapes"])
    if isinstance(q["quota_chips"], list):
        q["quota_chips"] = tuple(q["quota_chips"])
    tiers = q.get("commitments", [])
    if not isinstance(tiers, list):
        raise InputError(f"pools[{k}].commitments must be a list of tables, got {tiers!r}")
    q["commitments"] = tuple(
        Commitment(**_table(f"pools[{k}].commitments[{j}]", c, _COMMITMENT_KEYS, ("name", "term_periods", "discount")))
        for j, c in enumerate(tiers)
    )
    return Pool(**q)


def spec_from_dict(data: dict, origin: str = "plan") -> PlanSpec:
    """A PlanSpec from the TOML file's tables (field names as in the dataclasses)."""
    data = _table(origin, data, _PLAN_KEYS, ("models", "pools"))
    tables = {key: v if isinstance(v, list) else [v] for key, v in data.items() if key in ("models", "pools")}
    models = tuple(_model_from_dict(k, m) for k, m in enumerate(tables["models"]))
    pools = tuple(_pool_from_dict(k, q) for k, q in enumerate(tables["pools"]))
    rest = {key: data[key] for key in data if key not in ("models", "pools")}
    if isinstance(rest.get("budget_per_period"), list):
        rest["budget_per_period"] = tuple(rest["budget_per_period"])
    return PlanSpec(models=models, pools=pools, **rest)


def _is_relative_path(model: str, folder: Path) -> bool:
    """A relative path to a config (it exists there, or looks like a path), not a model's name."""
    if is_builtin_model(model) or Path(model).is_absolute():
        return False
    return (folder / model).exists() or "/" in model or model.endswith(".json")


def load_plan(path: str | Path) -> PlanSpec:
    """A plan file; a model given by a relative path (a config.json or its folder) and the
    calibration file are read from the plan file's folder."""
    spec = spec_from_dict(read_toml(Path(path), "plan file"), str(path))
    folder = Path(path).parent
    models = tuple(
        replace(m, model=str(folder / m.model)) if _is_relative_path(m.model, folder) else m for m in spec.models
    )
    calibration = spec.calibration
    if isinstance(calibration, str) and not Path(calibration).is_absolute():
        calibration = str(folder / calibration)
    return replace(spec, models=models, calibration=calibration)
