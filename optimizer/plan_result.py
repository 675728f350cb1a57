"""A procurement plan's result: plain dataclasses that serialize to `servesat plan --json` and
back (FleetPlan.to_dict / FleetPlan.from_dict round-trip exactly)."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PlanEntry:
    """Slices of one configuration serving one model in one period."""

    role: str  # "decode" or "prefill"
    pool: str
    chip: str
    topology: str
    chips: int  # per slice
    tp: int
    replicas: int  # replicas (decode) or servers (prefill) per slice
    weights: str
    kv: str
    slices: int
    rate_per_slice: float  # queries/s (decode) or prompts/s (prefill)
    batch: int | None  # decode: per replica
    step_ms: float | None  # decode
    prefill_ms: float | None  # prefill: one prompt


@dataclass
class ModelPeriod:
    """One model in one period: what it must serve and what serves it."""

    model: str
    period: int  # 1-based
    demand_qps: float  # the forecast
    required_qps: float  # forecast x (1 + headroom)
    capacity_qps: float  # what the deployment serves (per dtype pair, decode or prefill, the smaller)
    utilization: float  # forecast / capacity (0 when nothing is deployed)
    headroom_pct: float | None  # capacity over the forecast, percent (None: no forecast)
    chips: int
    entries: list[PlanEntry]


@dataclass
class PoolPeriod:
    """The bill of materials of one pool in one period."""

    pool: str
    chip: str
    period: int  # 1-based
    quota: int
    used: int  # chips in slices
    committed: dict[str, int]  # tier -> chips held under commitment this period
    on_demand: int
    slices: dict[str, int]  # slice shape -> slices in use
    cost_usd: float


@dataclass
class CommitmentPurchase:
    pool: str
    chip: str
    tier: str
    start_period: int  # 1-based
    term_periods: int
    chips: int
    discount: float
    usd_per_period: float
    total_usd: float  # what the plan's total counts for it (see commitment_accounting)


@dataclass
class PeriodCost:
    period: int  # 1-based
    on_demand_usd: float
    committed_usd: float
    total_usd: float
    budget_usd: float | None


@dataclass
class PlanStats:
    seconds: float
    solver_status: str
    time_limit_s: float
    offers: int  # slice offers the solver chose from (after dominance pruning)
    offers_before_pruning: int
    variables: int
    constraints: int


@dataclass
class FleetPlan:
    status: str  # optimal | feasible | infeasible | unknown
    objective: str  # "min-cost" or "max-served"
    reason: str | None  # why no plan (status infeasible / unknown)
    periods: int
    period_name: str
    period_hours: float
    headroom: float
    commitment_accounting: str
    total_cost_usd: float | None  # over the horizon (commitments per commitment_accounting)
    bound_usd: float | None  # the solver's lower bound on that cost
    gap: float | None  # (cost - bound) / cost
    served_qps: float | None  # max-served: queries/s served summed over models and periods
    required_qps: float | None  # ... of the forecast x (1 + headroom)
    costs: list[PeriodCost]
    bill: list[PoolPeriod]
    commitments: list[CommitmentPurchase]
    models: list[ModelPeriod]
    binding: list[str]  # what binds, in words
    shortfalls: list[str]  # which model and period is not (fully) served, and why
    solve: PlanStats
    notes: list[str] = field(default_factory=list)
    profile: str = "book"  # the cost model of the offers
    engine: str | None = None  # calibrated profile: the engine asked for (None: the parameters' default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FleetPlan:
        return _build(cls, data)


def _build(tp: Any, value: Any) -> Any:
    """Rebuild a value of annotated type `tp` from its asdict() form."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner[0], value)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_build(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _build(item, v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        kwargs = {f.name: _build(hints[f.name], value[f.name]) for f in dataclasses.fields(tp) if f.name in value}
        factory: Any = tp
        return factory(**kwargs)
    if tp is float and isinstance(value, int):
        return float(value)
    return value
