"""Plan files (TOML): their tables read into a PlanSpec, each key checked and named by its place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from optimizer.catalog import COMMITMENT_TIERS, Chip, load_chips, read_toml
from optimizer.errors import InputError, is_positive_number, unknown_name
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


def _catalog_tier(where: str, tier: dict, pool: dict, catalog: dict[str, Chip], period_hours: Any) -> Commitment:
    """A tier that gives neither term_periods nor discount: the catalog's 1-year or 3-year price
    of the pool's chip (at the pool's on-demand price, if it sets one)."""
    if "term_periods" in tier or "discount" in tier:
        missing = "discount" if "term_periods" in tier else "term_periods"
        raise InputError(f"{where} lacks {missing!r} (give both, or neither to take the catalog's price)")
    name = tier["name"]
    if name not in COMMITMENT_TIERS:
        raise InputError(
            f"{where} gives no term_periods and discount, so its name must be a catalog tier "
            f"({', '.join(COMMITMENT_TIERS)}), got {name!r}"
        )
    chip = pool.get("chip")
    known = {**getattr(catalog, "unpriced", {}), **catalog}
    if not isinstance(chip, str) or chip not in known:
        raise unknown_name(f"chip in {where.split('.')[0]}.chip", str(chip), sorted(catalog))
    if not is_positive_number(period_hours):
        raise InputError(f"period_hours must be a positive number, got {period_hours!r}")
    usd = pool.get("usd_per_chip_hour")
    try:
        return Commitment.from_catalog(name, known[chip], period_hours, usd if is_positive_number(usd) else None)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def _pool_from_dict(k: int, data: Any, catalog: dict[str, Chip], period_hours: Any) -> Pool:
    q = dict(_table(f"pools[{k}]", data, _POOL_KEYS, ("chip", "quota_chips")))
    if "shapes" in q:
        q["shapes"] = _strings(f"pools[{k}].shapes", q["shapes"])
    if isinstance(q["quota_chips"], list):
        q["quota_chips"] = tuple(q["quota_chips"])
    tiers = q.get("commitments", [])
    if not isinstance(tiers, list):
        raise InputError(f"pools[{k}].commitments must be a list of tables, got {tiers!r}")
    commitments = []
    for j, c in enumerate(tiers):
        where = f"pools[{k}].commitments[{j}]"
        tier = _table(where, c, _COMMITMENT_KEYS, ("name",))
        if "term_periods" in tier and "discount" in tier:
            commitments.append(Commitment(**tier))
        else:
            commitments.append(_catalog_tier(where, tier, q, catalog, period_hours))
    q["commitments"] = tuple(commitments)
    return Pool(**q)


def spec_from_dict(data: dict, origin: str = "plan", catalog: dict[str, Chip] | None = None) -> PlanSpec:
    """A PlanSpec from the TOML file's tables (field names as in the dataclasses); a commitment
    tier named 1-year or 3-year without term_periods and discount takes the price of `catalog`
    (default: the built-in one)."""
    data = _table(origin, data, _PLAN_KEYS, ("models", "pools"))
    tables = {key: v if isinstance(v, list) else [v] for key, v in data.items() if key in ("models", "pools")}
    models = tuple(_model_from_dict(k, m) for k, m in enumerate(tables["models"]))
    catalog = catalog if catalog is not None else load_chips()
    period_hours = data.get("period_hours", PlanSpec.__dataclass_fields__["period_hours"].default)
    pools = tuple(_pool_from_dict(k, q, catalog, period_hours) for k, q in enumerate(tables["pools"]))
    rest = {key: data[key] for key in data if key not in ("models", "pools")}
    if isinstance(rest.get("budget_per_period"), list):
        rest["budget_per_period"] = tuple(rest["budget_per_period"])
    return PlanSpec(models=models, pools=pools, **rest)


def _is_relative_path(model: str, folder: Path) -> bool:
    """A relative path to a config (it exists there, or looks like a path), not a model's name."""
    if is_builtin_model(model) or Path(model).is_absolute():
        return False
    return (folder / model).exists() or "/" in model or model.endswith(".json")


def load_plan(path: str | Path, catalog: dict[str, Chip] | None = None) -> PlanSpec:
    """A plan file; a model given by a relative path (a config.json or its folder) and the
    calibration file are read from the plan file's folder; `catalog` (default: the built-in
    one) prices the commitment tiers that take the catalog's price."""
    spec = spec_from_dict(read_toml(Path(path), "plan file"), str(path), catalog)
    folder = Path(path).parent
    models = tuple(
        replace(m, model=str(folder / m.model)) if _is_relative_path(m.model, folder) else m for m in spec.models
    )
    calibration = spec.calibration
    if isinstance(calibration, str) and not Path(calibration).is_absolute():
        calibration = str(folder / calibration)
    return replace(spec, models=models, calibration=calibration)
