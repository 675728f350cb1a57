"""Procurement-plan input: models with demand forecasts, chip pools with quotas and price
tiers, and plan-wide options. Frozen dataclasses, validated on construction (InputError, a
ValueError, naming the field), loadable from a TOML file (load_plan) or built in Python.

Units: demand in queries per second per period; prices in USD per chip-hour; a period lasts
`period_hours` (730: a month); a commitment's term is a whole number of periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from optimizer.catalog import DTYPES, Chip, load_chips, read_toml
from optimizer.errors import InputError, unknown_name
from optimizer.workload import PROFILES, SERVING, Workload

#: How a commitment whose term runs past the plan's last period is charged: every period of
#: its term ("full-term", the money the decision commits), or only the plan's periods
#: ("horizon", as if the capacity after the horizon will be worth its price).
COMMITMENT_ACCOUNTING = ("full-term", "horizon")
MAX_PERIODS = 120


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _per_period(where: str, value: Any, periods: int, *, integer: bool = False, positive: bool = False) -> tuple:
    """One value (every period) or a list of exactly `periods` values."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * periods
    if len(values) != periods:
        raise InputError(
            f"{where} has {len(values)} values but the plan has {periods} periods (give one value, or one per period)"
        )
    kind = "integer" if integer else "number"
    for k, v in enumerate(values):
        at = f"{where}[{k}]" if isinstance(value, (list, tuple)) else where
        if not _is_number(v) or (integer and not float(v).is_integer()):
            raise InputError(f"{at} must be a {'positive ' if positive else ''}{kind}, got {v!r}")
        if v < 0 or (positive and v == 0):
            raise InputError(f"{at} must be {'positive' if positive else 'zero or more'}, got {v!r}")
    return tuple(int(v) if integer else float(v) for v in values)


@dataclass(frozen=True)
class PlanModel:
    """One served model: its forecast and its targets. `model` is a catalog name or a
    config.json path; `name` labels it in the plan (default: `model`)."""

    model: str
    demand_qps: tuple[float, ...] | float
    slo_ms: float
    name: str = ""
    ttft_ms: float | None = None
    context: int = 8192
    decode_len: int = 512
    prompt_len: int | None = None
    prefill_mfu: float = 0.4
    serving: str = "disaggregated"
    weights: tuple[str, ...] | None = None
    kv: tuple[str, ...] | None = None

    def workload(self, profile: str = "book", engine: str | None = None, calibration: str | None = None) -> Workload:
        return Workload(
            context=self.context,
            decode_len=self.decode_len,
            slo_ms=self.slo_ms,
            prompt_len=self.prompt_len,
            prefill_mfu=self.prefill_mfu,
            ttft_ms=self.ttft_ms,
            serving=self.serving,
            profile=profile,
            engine=engine,
            calibration=calibration,
        )

    @property
    def label(self) -> str:
        return self.name or str(self.model)


@dataclass(frozen=True)
class Commitment:
    """A committed-use tier: `discount` off the on-demand price, paid for every chip every
    period of the term, used or not."""

    name: str
    term_periods: int
    discount: float


@dataclass(frozen=True)
class Pool:
    """Chips of one type the plan may use: at most `quota_chips` held in a period (one number
    or one per period), on demand and/or under commitments, in the listed slice shapes."""

    chip: str
    quota_chips: tuple[int, ...] | int
    name: str = ""
    shapes: tuple[str, ...] | None = None  # None: every slice of the chip
    usd_per_chip_hour: float | None = None  # None: the catalog's on-demand price
    on_demand: bool = True
    commitments: tuple[Commitment, ...] = ()

    @property
    def label(self) -> str:
        return self.name or self.chip


@dataclass(frozen=True)
class PlanSpec:
    models: tuple[PlanModel, ...]
    pools: tuple[Pool, ...]
    periods: int = 1
    period_hours: float = 730.0
    headroom: float = 0.0  # serve (1 + headroom) x the forecast
    budget_per_period: tuple[float, ...] | float | None = None  # USD
    share_slices: bool = False
    commitment_accounting: str = "full-term"
    period_name: str = "month"
    profile: str = "book"  # the cost model of every model's offers: "book" or "calibrated"
    engine: str | None = None  # calibrated profile: the serving engine
    calibration: str | None = None  # calibrated profile: a parameter file

    def workload(self, m: PlanModel) -> Workload:
        return m.workload(self.profile, self.engine, self.calibration)


@dataclass(frozen=True)
class ResolvedPlan:
    """A validated PlanSpec with per-period values expanded and the pools' chips resolved."""

    spec: PlanSpec
    demand: tuple[tuple[float, ...], ...]  # [model][period], QPS, forecast
    quota: tuple[tuple[int, ...], ...]  # [pool][period], chips
    budget: tuple[float, ...] | None
    chips: tuple[Chip, ...]  # per pool: the catalog chip with the pool's shapes and price

    @property
    def periods(self) -> int:
        return self.spec.periods


def resolve(spec: PlanSpec, catalog: dict[str, Chip] | None = None) -> ResolvedPlan:
    """Validate every field (InputError naming it) and expand per-period values."""
    catalog = catalog if catalog is not None else load_chips()
    p = spec.periods
    if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= MAX_PERIODS:
        raise InputError(f"periods must be an integer from 1 to {MAX_PERIODS}, got {p!r}")
    if not _is_number(spec.period_hours) or spec.period_hours <= 0:
        raise InputError(f"period_hours must be a positive number, got {spec.period_hours!r}")
    if not _is_number(spec.headroom) or spec.headroom < 0:
        raise InputError(f"headroom must be a number >= 0 (0.2 for 20%), got {spec.headroom!r}")
    if spec.commitment_accounting not in COMMITMENT_ACCOUNTING:
        raise unknown_name("commitment_accounting", str(spec.commitment_accounting), list(COMMITMENT_ACCOUNTING))
    if spec.profile not in PROFILES:
        raise unknown_name("profile", str(spec.profile), list(PROFILES))
    if spec.share_slices:
        raise InputError(
            "share_slices = true is not supported: each slice serves one model "
            "(several models per slice needs a shared-HBM cost model servesat does not have)"
        )
    if not isinstance(spec.period_name, str) or not spec.period_name:
        raise InputError(f"period_name must be a non-empty string, got {spec.period_name!r}")
    if spec.calibration is not None and not isinstance(spec.calibration, str):
        raise InputError(f"calibration must be a file path, got {spec.calibration!r}")
    if not spec.models:
        raise InputError("the plan has no models: add at least one [[models]] entry")
    if not spec.pools:
        raise InputError("the plan has no pools: add at least one [[pools]] entry")
    for k, m in enumerate(spec.models):
        for key in ("model", "name"):
            value = getattr(m, key)
            if not isinstance(value, str) or (key == "model" and not value):
                raise InputError(f"models[{k}].{key} must be a non-empty string, got {value!r}")
    for k, pool in enumerate(spec.pools):
        for key in ("chip", "name"):
            if not isinstance(getattr(pool, key), str):
                raise InputError(f"pools[{k}].{key} must be a string, got {getattr(pool, key)!r}")
        if not isinstance(pool.commitments, (tuple, list)):
            raise InputError(f"pools[{k}].commitments must be a list, got {pool.commitments!r}")
    labels = [m.label for m in spec.models]
    for k, m in enumerate(spec.models):
        where = f"models[{k}]"
        if labels.count(m.label) > 1:
            raise InputError(f"{where}: name {m.label!r} is used twice; give each model entry its own name")
        if not _is_number(m.slo_ms) or m.slo_ms <= 0:
            raise InputError(f"{where}.slo_ms must be a positive number, got {m.slo_ms!r}")
        if m.serving not in SERVING:
            raise unknown_name(f"{where}.serving", str(m.serving), list(SERVING))
        for kind, values in (("weights", m.weights), ("kv", m.kv)):
            for v in values or ():
                if v not in DTYPES:
                    raise unknown_name(f"{where}.{kind} dtype", str(v), DTYPES)
        try:
            spec.workload(m)
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
    demand = tuple(_per_period(f"models[{k}].demand_qps", m.demand_qps, p) for k, m in enumerate(spec.models))
    pool_labels = [q.label for q in spec.pools]
    chips = []
    quota = []
    for k, pool in enumerate(spec.pools):
        where = f"pools[{k}]"
        if pool_labels.count(pool.label) > 1:
            raise InputError(f"{where}: name {pool.label!r} is used twice; give each pool its own name")
        if pool.chip not in catalog:
            raise unknown_name(f"chip in {where}.chip", str(pool.chip), sorted(catalog))
        chip = catalog[pool.chip]
        quota.append(_per_period(f"{where}.quota_chips", pool.quota_chips, p, integer=True, positive=True))
        if pool.shapes is not None:
            if not pool.shapes:
                raise InputError(f"{where}.shapes is empty; leave it out for every slice of {chip.name}")
            for s in pool.shapes:
                if not isinstance(s, str) or s not in chip.topologies:
                    raise InputError(
                        f"{where}.shapes: {s!r} is not a {chip.name} slice; valid: {', '.join(chip.topologies)}"
                    )
            chip = replace(chip, topologies=tuple(dict.fromkeys(pool.shapes)))
        if pool.usd_per_chip_hour is not None:
            if not _is_number(pool.usd_per_chip_hour) or pool.usd_per_chip_hour <= 0:
                raise InputError(f"{where}.usd_per_chip_hour must be a positive number, got {pool.usd_per_chip_hour!r}")
            chip = replace(chip, usd_per_chip_hour=float(pool.usd_per_chip_hour))
        if not isinstance(pool.on_demand, bool):
            raise InputError(f"{where}.on_demand must be true or false, got {pool.on_demand!r}")
        if not pool.on_demand and not pool.commitments:
            raise InputError(f"{where} allows neither on-demand chips nor any commitment: nothing can be used")
        names = [c.name for c in pool.commitments]
        for j, c in enumerate(pool.commitments):
            at = f"{where}.commitments[{j}]"
            if not c.name or names.count(c.name) > 1:
                raise InputError(f"{at}.name must be a unique non-empty name, got {c.name!r}")
            if isinstance(c.term_periods, bool) or not isinstance(c.term_periods, int) or c.term_periods < 1:
                raise InputError(f"{at}.term_periods must be a positive integer, got {c.term_periods!r}")
            if not _is_number(c.discount) or not 0 <= c.discount < 1:
                raise InputError(
                    f"{at}.discount must be a fraction from 0 to below 1 (0.37 for 37%), got {c.discount!r}"
                )
        chips.append(chip)
    budget = None
    if spec.budget_per_period is not None:
        budget = _per_period("budget_per_period", spec.budget_per_period, p, positive=True)
    return ResolvedPlan(spec=spec, demand=demand, quota=tuple(quota), budget=budget, chips=tuple(chips))


_MODEL_KEYS = {f for f in PlanModel.__dataclass_fields__}
_POOL_KEYS = {f for f in Pool.__dataclass_fields__}
_COMMITMENT_KEYS = {f for f in Commitment.__dataclass_fields__}
_PLAN_KEYS = {f for f in PlanSpec.__dataclass_fields__}


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


def spec_from_dict(data: dict, origin: str = "plan") -> PlanSpec:
    """A PlanSpec from the TOML file's tables (field names as in the dataclasses)."""
    data = _table(origin, data, _PLAN_KEYS, ("models", "pools"))
    models = []
    for k, m in enumerate(data["models"] if isinstance(data["models"], list) else [data["models"]]):
        m = dict(_table(f"models[{k}]", m, _MODEL_KEYS, ("model", "demand_qps", "slo_ms")))
        for key in ("weights", "kv"):
            if key in m:
                m[key] = _strings(f"models[{k}].{key}", m[key])
        if isinstance(m["demand_qps"], list):
            m["demand_qps"] = tuple(m["demand_qps"])
        models.append(PlanModel(**m))
    pools = []
    for k, q in enumerate(data["pools"] if isinstance(data["pools"], list) else [data["pools"]]):
        q = dict(_table(f"pools[{k}]", q, _POOL_KEYS, ("chip", "quota_chips")))
        if "shapes" in q:
            q["shapes"] = _strings(f"pools[{k}].shapes", q["shapes"])
        if isinstance(q["quota_chips"], list):
            q["quota_chips"] = tuple(q["quota_chips"])
        tiers = q.get("commitments", [])
        if not isinstance(tiers, list):
            raise InputError(f"pools[{k}].commitments must be a list of tables, got {tiers!r}")
        q["commitments"] = tuple(
            Commitment(
                **_table(f"pools[{k}].commitments[{j}]", c, _COMMITMENT_KEYS, ("name", "term_periods", "discount"))
            )
            for j, c in enumerate(tiers)
        )
        pools.append(Pool(**q))
    rest = {key: data[key] for key in data if key not in ("models", "pools")}
    if isinstance(rest.get("budget_per_period"), list):
        rest["budget_per_period"] = tuple(rest["budget_per_period"])
    return PlanSpec(models=tuple(models), pools=tuple(pools), **rest)


def load_plan(path: str | Path) -> PlanSpec:
    """A plan file; a model given as a relative config.json path is read from the file's folder."""
    spec = spec_from_dict(read_toml(Path(path), "plan file"), str(path))
    folder = Path(path).parent
    models = tuple(
        replace(m, model=str(folder / m.model))
        if isinstance(m.model, str) and m.model.endswith(".json") and not Path(m.model).is_absolute()
        else m
        for m in spec.models
    )
    calibration = spec.calibration
    if isinstance(calibration, str) and not Path(calibration).is_absolute():
        calibration = str(folder / calibration)
    return replace(spec, models=models, calibration=calibration)


__all__ = [
    "COMMITMENT_ACCOUNTING",
    "Commitment",
    "PlanModel",
    "PlanSpec",
    "Pool",
    "ResolvedPlan",
    "load_plan",
    "resolve",
    "spec_from_dict",
]
