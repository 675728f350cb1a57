"""A procurement plan's result: plain dataclasses that serialize to `servesat plan --json` and
back (FleetPlan.to_dict / FleetPlan.from_dict round-trip exactly), and the FleetPlan of a
solve's outcome (every figure recomputed in floating point from the chosen integers)."""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from optimizer import scaling
from optimizer.planning.check import Solution, Tally, tally
from optimizer.planning.explain import binding, shortfalls
from optimizer.planning.offers import PlanOffers
from optimizer.planning.spec import ResolvedPlan
from optimizer.profiles import Calibrated


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
    # status optimal: "cp-sat" (the full model solved), or "cover bounds" (the starting plan
    # costs what the cover cuts prove every plan costs at least; the full model not searched)
    proven_by: str | None = None


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
    # calibrated profile: the band (%) of every offer's step and TTFT, which the slices a load
    # needs and so the costs carry; and the parameters behind the pools' chips that are priors
    uncertainty: dict[str, float] | None = None
    assumed: list[str] = field(default_factory=list)

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


@dataclass
class Outcome:
    """What a solve gives: a status, and the chosen integers when it found a plan."""

    status: str
    objective: str
    solution: Solution | None = None
    bound_usd_int: int | None = None
    reason: str | None = None
    variables: int = 0
    constraints: int = 0
    proven_by: str = "cp-sat"  # what proved an optimal plan: "cp-sat", or "cover bounds" (solve_plan)


def fleet_plan(rp: ResolvedPlan, po: PlanOffers, outcome: Outcome, started: float, time_limit_s: float) -> FleetPlan:
    """The FleetPlan of an outcome; `started`: when plan() began (time.perf_counter())."""
    spec = rp.spec
    T = rp.periods
    required = rp.required_qps
    result = FleetPlan(
        status=outcome.status,
        objective=outcome.objective,
        reason=outcome.reason,
        periods=T,
        period_name=spec.period_name,
        period_hours=spec.period_hours,
        headroom=spec.headroom,
        commitment_accounting=spec.commitment_accounting,
        total_cost_usd=None,
        bound_usd=None,
        gap=None,
        served_qps=None,
        required_qps=sum(sum(r) for r in required) if outcome.objective == "max-served" else None,
        costs=[],
        bill=[],
        commitments=[],
        models=[],
        binding=[],
        shortfalls=[],
        solve=PlanStats(
            seconds=0.0,
            solver_status=outcome.status,
            time_limit_s=time_limit_s,
            offers=po.count,
            offers_before_pruning=po.before_pruning,
            variables=outcome.variables,
            constraints=outcome.constraints,
            proven_by=outcome.proven_by if outcome.status == "optimal" else None,
        ),
        profile=spec.base_profile.name,
        engine=spec.base_profile.engine if isinstance(spec.base_profile, Calibrated) else None,
        uncertainty=spec.base_profile.uncertainty(),
        assumed=spec.base_profile.assumed(sorted({c.name for c in rp.chips})),
    )
    if outcome.solution is not None:
        _fill(result, rp, po, outcome, outcome.solution)
    result.notes += spec.profile_notes({c.name for c in rp.chips})
    result.solve.seconds = time.perf_counter() - started
    return result


def _fill(result: FleetPlan, rp: ResolvedPlan, po: PlanOffers, outcome: Outcome, sol: Solution) -> None:
    """The figures of a plan that was found."""
    T = rp.periods
    tl = tally(rp, po, sol)
    result.commitments = _purchases(rp, sol)
    result.costs = _costs(rp, tl)
    result.bill = [pp for t in range(T) for pp in _bill(rp, po, sol, tl, t)]
    result.models = [_model_period(rp, po, sol, tl, mi, t) for mi in range(len(rp.spec.models)) for t in range(T)]
    result.total_cost_usd = sum(c.on_demand_usd for c in result.costs) + sum(c.total_usd for c in result.commitments)
    if outcome.bound_usd_int is not None:
        result.bound_usd = outcome.bound_usd_int / scaling.USD_UNITS
        result.gap = max(0.0, (tl.cost_int - outcome.bound_usd_int) / tl.cost_int) if tl.cost_int else 0.0
    result.binding = binding(rp, po, sol, tl)
    result.shortfalls = shortfalls(rp, po, sol)
    if outcome.objective == "max-served":
        result.served_qps = sum(
            min(tl.capacity_qps[mi][t], rp.required_qps[mi][t]) for mi in range(len(rp.spec.models)) for t in range(T)
        )
    beyond = sum(
        c.total_usd - c.usd_per_period * min(c.term_periods, T - c.start_period + 1) for c in result.commitments
    )
    if beyond > 0:
        result.notes.append(
            f"commitments running past {rp.spec.period_name} {T} add ${beyond:,.0f} to the total "
            "(full-term accounting: every period of a term is paid)"
        )


def _purchases(rp: ResolvedPlan, sol: Solution) -> list[CommitmentPurchase]:
    out = []
    for (p, c, s), chips in sorted(sol.commit.items()):
        tier = rp.spec.pools[p].commitments[c]
        per_period = rp.chips[p].usd_per_chip_hour * (1 - tier.discount) * rp.spec.period_hours * chips
        out.append(
            CommitmentPurchase(
                pool=rp.spec.pools[p].label,
                chip=rp.chips[p].name,
                tier=tier.name,
                start_period=s + 1,
                term_periods=tier.term_periods,
                chips=chips,
                discount=tier.discount,
                usd_per_period=per_period,
                total_usd=per_period * rp.charged_periods(s, tier.term_periods),
            )
        )
    return out


def _costs(rp: ResolvedPlan, tl: Tally) -> list[PeriodCost]:
    out = []
    for t in range(rp.periods):
        od = sum(
            rp.chips[p].usd_per_chip_hour * rp.spec.period_hours * tl.on_demand[p][t] for p in range(len(rp.chips))
        )
        period_total = tl.period_cost_usd[t]
        out.append(
            PeriodCost(
                period=t + 1,
                on_demand_usd=od,
                committed_usd=period_total - od,
                total_usd=period_total,
                budget_usd=rp.budget[t] if rp.budget else None,
            )
        )
    return out


def _bill(rp: ResolvedPlan, po: PlanOffers, sol: Solution, tl: Tally, t: int) -> list[PoolPeriod]:
    """The bill of materials of period t: every pool with chips in use or committed."""
    out = []
    for p, pool in enumerate(rp.spec.pools):
        shapes: dict[str, int] = {}
        for (mi, k, t2), n in sorted(sol.slices.items()):
            o = po.offers[mi][k]
            if t2 == t and o.pool == p:
                shapes[o.config["topology"]] = shapes.get(o.config["topology"], 0) + n
        if tl.used[p][t] or tl.committed[p][t]:
            out.append(
                PoolPeriod(
                    pool=pool.label,
                    chip=rp.chips[p].name,
                    period=t + 1,
                    quota=rp.quota[p][t],
                    used=tl.used[p][t],
                    committed=dict(tl.committed_by_tier[p][t]),
                    on_demand=tl.on_demand[p][t],
                    slices=shapes,
                    cost_usd=tl.pool_cost_usd[p][t],
                )
            )
    return out


def _model_period(rp: ResolvedPlan, po: PlanOffers, sol: Solution, tl: Tally, mi: int, t: int) -> ModelPeriod:
    entries = []
    for k, o in enumerate(po.offers[mi]):
        n = sol.slices.get((mi, k, t), 0)
        if n:
            cfg = o.config
            entries.append(
                PlanEntry(
                    role=o.role,
                    pool=rp.spec.pools[o.pool].label,
                    chip=cfg["chip"],
                    topology=cfg["topology"],
                    chips=cfg["chips"],
                    tp=cfg["tp"],
                    replicas=cfg["replicas"],
                    weights=cfg["weights"],
                    kv=cfg["kv"],
                    slices=n,
                    rate_per_slice=o.rate,
                    batch=o.batch,
                    step_ms=o.step_ms,
                    prefill_ms=o.prefill_ms,
                )
            )
    cap = tl.capacity_qps[mi][t]
    d = rp.demand[mi][t]
    return ModelPeriod(
        model=rp.spec.models[mi].label,
        period=t + 1,
        demand_qps=d,
        required_qps=rp.required_qps[mi][t],
        capacity_qps=cap,
        utilization=d / cap if cap > 0 else 0.0,
        headroom_pct=100.0 * (cap - d) / d if d > 0 else None,
        chips=tl.model_chips[mi][t],
        entries=entries,
    )
