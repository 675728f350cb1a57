"""From a plan's chosen integers to a FleetPlan: every figure recomputed in floating point,
a solver-free check of every constraint family (the test oracle), and what binds in words."""

from __future__ import annotations

import time
from dataclasses import dataclass

from constraints import budget, commitments, quota
from constraints.demand import Offer, demand_int, servable_qps
from optimizer.catalog import Model
from optimizer.offers import SliceOffer, cheapest_deployment
from optimizer.plan_result import (
    CommitmentPurchase,
    FleetPlan,
    ModelPeriod,
    PeriodCost,
    PlanEntry,
    PlanStats,
    PoolPeriod,
)
from optimizer.plan_spec import ResolvedPlan


@dataclass
class PlanOffers:
    """Per model, the offers the solver chooses from."""

    models: list[Model]
    offers: list[list[SliceOffer]]
    before_pruning: int

    @property
    def count(self) -> int:
        return sum(len(o) for o in self.offers)


@dataclass
class Solution:
    """A plan's integers: slices per (model, offer, period), chips per (pool, tier, start)."""

    slices: dict[tuple[int, int, int], int]
    commit: dict[tuple[int, int, int], int]


@dataclass
class Outcome:
    status: str
    objective: str
    solution: Solution | None = None
    bound_usd_int: int | None = None
    reason: str | None = None
    variables: int = 0
    constraints: int = 0


def charged_periods(rp: ResolvedPlan, start: int, term: int) -> int:
    """Periods of a commitment's term the plan's total counts (see COMMITMENT_ACCOUNTING)."""
    return term if rp.spec.commitment_accounting == "full-term" else min(term, rp.periods - start)


def required_qps(rp: ResolvedPlan) -> list[list[float]]:
    """The forecast times (1 + headroom), per model and period."""
    return [[d * (1.0 + rp.spec.headroom) for d in row] for row in rp.demand]


@dataclass
class Tally:
    """A solution's figures, recomputed without the solver. On-demand chips are exactly the
    chips in use beyond those committed (renting more would only cost more)."""

    used: list[list[int]]  # [pool][period] chips in slices
    committed: list[list[int]]  # [pool][period]
    committed_by_tier: list[list[dict[str, int]]]
    on_demand: list[list[int]]
    pool_cost_usd: list[list[float]]  # [pool][period] what the period pays for the pool
    capacity_qps: list[list[float]]  # [model][period]
    model_chips: list[list[int]]
    cost_int: int  # the objective's value in micro-dollars

    @property
    def period_cost_usd(self) -> list[float]:
        return [sum(col) for col in zip(*self.pool_cost_usd)]


def tally(rp: ResolvedPlan, po: PlanOffers, sol: Solution) -> Tally:
    T, P = rp.periods, len(rp.chips)
    hours = rp.spec.period_hours
    used = [[0] * T for _ in range(P)]
    model_chips = [[0] * T for _ in po.offers]
    for (mi, k, t), n in sol.slices.items():
        o = po.offers[mi][k]
        used[o.pool][t] += o.chips * n
        model_chips[mi][t] += o.chips * n
    tiers = [pool.commitments for pool in rp.spec.pools]
    committed = [[0] * T for _ in range(P)]
    by_tier: list[list[dict[str, int]]] = [[{} for _ in range(T)] for _ in range(P)]
    cost = [[0.0] * T for _ in range(P)]
    cost_int = 0
    for (p, c, s), chips in sol.commit.items():
        tier = tiers[p][c]
        per_period = rp.chips[p].usd_per_chip_hour * (1 - tier.discount) * hours
        cost_int += budget.usd_int(per_period) * chips * charged_periods(rp, s, tier.term_periods)
        for t in range(s, min(s + tier.term_periods, T)):
            committed[p][t] += chips
            by_tier[p][t][tier.name] = by_tier[p][t].get(tier.name, 0) + chips
            cost[p][t] += per_period * chips
    on_demand = [[max(0, used[p][t] - committed[p][t]) for t in range(T)] for p in range(P)]
    for p in range(P):
        per_chip = rp.chips[p].usd_per_chip_hour * hours
        for t in range(T):
            cost[p][t] += per_chip * on_demand[p][t]
            cost_int += budget.usd_int(per_chip) * on_demand[p][t]
    capacity = [
        [
            servable_qps(*_offers_in(po, sol, mi, t), rp.spec.workload(rp.spec.models[mi]).prefill_servers)
            for t in range(T)
        ]
        for mi in range(len(po.offers))
    ]
    return Tally(used, committed, by_tier, on_demand, cost, capacity, model_chips, cost_int)


def _offers_in(po: PlanOffers, sol: Solution, mi: int, t: int) -> tuple[list, list]:
    decode: list[tuple[Offer, int]] = []
    prefill: list[tuple[Offer, int]] = []
    for k, o in enumerate(po.offers[mi]):
        n = sol.slices.get((mi, k, t), 0)
        if n:
            (decode if o.role == "decode" else prefill).append((Offer(k, o.group, o.rate, 0.0), n))
    return decode, prefill


def check_plan(rp: ResolvedPlan, po: PlanOffers, sol: Solution, serve_all: bool = True) -> list[str]:
    """Solver-free: every violated constraint of a solution (empty: the plan is valid).
    serve_all=False (a max-served plan) skips the demand family."""
    tl = tally(rp, po, sol)
    out: list[str] = []
    names = [pool.label for pool in rp.spec.pools]
    if serve_all:
        for mi, row in enumerate(required_qps(rp)):
            for t, q in enumerate(row):
                if tl.capacity_qps[mi][t] < q:
                    out.append(
                        f"{rp.spec.models[mi].label} period {t + 1}: serves {tl.capacity_qps[mi][t]:.6g} "
                        f"queries/s, below the {q:.6g} required"
                    )
    out += quota.check(tl.used, tl.committed, rp.quota, names)
    # commitments: the tally rents exactly the shortfall, so only commitment-only pools can fail
    out += commitments.check(tl.used, tl.committed, tl.on_demand, [p.on_demand for p in rp.spec.pools], names)
    if rp.budget is not None:
        out += budget.check(tl.period_cost_usd, rp.budget)
    for (mi, k, t), n in sol.slices.items():
        if n < 0 or not 0 <= t < rp.periods:
            out.append(f"slices[{mi},{k},{t}] = {n} is not a valid count")
    return out


def periods_text(rp: ResolvedPlan, periods: list[int]) -> str:
    """0-based period indices as '{name} 3' or '{name}s 7-12' or '{name}s 1-2, 5'."""
    name = rp.spec.period_name
    ranges: list[list[int]] = []
    for t in sorted(periods):
        if ranges and t == ranges[-1][1] + 1:
            ranges[-1][1] = t
        else:
            ranges.append([t, t])
    parts = [f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in ranges]
    plural = len(periods) > 1
    return f"{name}{'s' if plural else ''} {', '.join(parts)}"


def unservable(rp: ResolvedPlan, po: PlanOffers) -> str | None:
    """A model with demand that no pool can serve at all, and why (None: every model can)."""
    from optimizer.api import infeasible_reason
    from optimizer.candidates import build_table
    from optimizer.solve import ServingModel

    for mi, offers in enumerate(po.offers):
        if not any(rp.demand[mi]) or any(o.role == "decode" for o in offers):
            continue
        pm = rp.spec.models[mi]
        wl = rp.spec.workload(pm)
        table = build_table(po.models[mi], {c.name: c for c in rp.chips}, wl, pm.weights, pm.kv)
        if not len(table):
            why = "none of the pools' chips supports its weight and KV dtypes"
        else:
            why = infeasible_reason(ServingModel(table, wl, "queries-per-dollar"), wl)
        served = [t for t, d in enumerate(rp.demand[mi]) if d > 0]
        return f"{pm.label} cannot be served on any pool ({periods_text(rp, served)} have demand): {why}"
    return None


def shortfalls(rp: ResolvedPlan, po: PlanOffers, sol: Solution) -> list[str]:
    """Per model, the periods a solution serves less than required, grouped by period runs."""
    tl = tally(rp, po, sol)
    out = []
    for mi, row in enumerate(required_qps(rp)):
        short = [t for t, q in enumerate(row) if tl.capacity_qps[mi][t] < q * (1 - 1e-9)]
        if short:
            worst = min(short, key=lambda t: tl.capacity_qps[mi][t] / row[t])
            out.append(
                f"{rp.spec.models[mi].label} in {periods_text(rp, short)} (at worst "
                f"{tl.capacity_qps[mi][worst]:.4g} of {row[worst]:.4g} queries/s, {rp.spec.period_name} "
                f"{worst + 1})"
            )
    return out


def binding(rp: ResolvedPlan, po: PlanOffers, sol: Solution, tl: Tally) -> list[str]:
    """What shapes the plan, in words: binding quotas (and what they push models to),
    binding budgets, commitments and their break-even."""
    T = rp.periods
    out = []
    names = [pool.label for pool in rp.spec.pools]
    required = required_qps(rp)
    smallest: dict[int, int] = {}
    for offers in po.offers:
        for o in offers:
            smallest[o.pool] = min(smallest.get(o.pool, o.chips), o.chips)
    # A quota binds where a model's cheapest deployment (on-demand prices, no quotas) wants more
    # of a pool than the plan gives it and the pool has no room left for the difference; the
    # model then pays more per query (same prices) on the pools it moves to.
    # pool -> model -> [periods, ideal $, actual $, pools moved to, fully served in all of them]
    pushed: dict[int, dict[int, list]] = {}
    weight_per_chip = [budget.usd_int(c.usd_per_chip_hour) for c in rp.chips]
    for mi, offers in enumerate(po.offers):
        with_prefill = rp.spec.workload(rp.spec.models[mi]).prefill_servers
        weight = {k: o.chips * weight_per_chip[o.pool] for k, o in enumerate(offers)}
        for t in range(T):
            q = demand_int(required[mi][t])
            if q == 0 or not offers:
                continue
            ideal_cost, ideal = cheapest_deployment(offers, q, range(len(offers)), weight, with_prefill)
            need = [0] * len(names)
            for k, n in ideal.items():
                need[offers[k].pool] += n * offers[k].chips
            given = [0] * len(names)
            for (m2, k, t2), n in sol.slices.items():
                if m2 == mi and t2 == t:
                    given[offers[k].pool] += n * offers[k].chips
            served_all = tl.capacity_qps[mi][t] >= required[mi][t] * (1 - 1e-9)
            for p in range(len(names)):
                free = rp.quota[p][t] - max(tl.used[p][t], tl.committed[p][t])
                if need[p] > given[p] and free < need[p] - given[p]:
                    entry = pushed.setdefault(p, {}).setdefault(mi, [set(), 0, 0, set(), True])
                    entry[0].add(t)
                    entry[1] += ideal_cost
                    entry[2] += sum(g * w for g, w in zip(given, weight_per_chip))
                    entry[3] |= {names[x] for x in range(len(names)) if given[x] > need[x]}
                    entry[4] = entry[4] and served_all
    for p, models in sorted(pushed.items()):
        full = sorted(set().union(*(e[0] for e in models.values())))
        limits = sorted({rp.quota[p][t] for t in full})
        quota_text = f"{limits[0]} chips" if len(limits) == 1 else f"{limits[0]}-{limits[-1]} chips"
        parts = [
            f"the {names[p]} quota of {quota_text} binds in {periods_text(rp, full)} (too few chips left for "
            "the cheapest deployments)"
        ]
        for mi, (_, ideal_cost, actual, moved, served_all) in sorted(models.items()):
            label = rp.spec.models[mi].label
            if not served_all:  # a cost per query means little for load that is not served
                parts.append(f"{label} is not fully served there")
                continue
            names_moved = sorted(moved)
            moved_text = ", ".join(names_moved[:-1]) + " and " + names_moved[-1] if len(moved) > 1 else "".join(moved)
            where = f" moves to {moved_text} and" if moved else ""
            parts.append(
                f"{label}{where} pays {100 * (actual / ideal_cost - 1):+.0f}% per query "
                "over its cheapest deployment (on-demand prices)"
            )
        out.append("; ".join(parts))
    if rp.budget is not None and smallest:
        step = min(rp.chips[p].usd_per_chip_hour * rp.spec.period_hours * smallest[p] for p in smallest)
        spent = tl.period_cost_usd
        tight = [t for t in range(T) if rp.budget[t] - spent[t] < step]
        if tight:
            out.append(
                f"the budget binds in {periods_text(rp, tight)}: less than one more slice's cost is left "
                f"(spent ${max(spent[t] for t in tight):,.0f} of ${max(rp.budget[t] for t in tight):,.0f} "
                f"at most)"
            )
    bought: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (p, c, s), chips in sorted(sol.commit.items()):
        bought.setdefault((p, c), []).append((s, chips))
    for (p, c), buys in bought.items():
        tier = rp.spec.pools[p].commitments[c]
        what = ", ".join(f"{chips} chips from {rp.spec.period_name} {s + 1}" for s, chips in buys)
        # a chip committed from period s is paid for `charged` periods and held for `covered` of the
        # plan's: it beats renting if busy in more than (1 - d) * charged of those
        s0 = buys[0][0]
        covered = min(tier.term_periods, T - s0)
        share = (1 - tier.discount) * charged_periods(rp, s0, tier.term_periods) / covered
        out.append(
            f"{names[p]} {tier.name} commitments ({tier.discount:.0%} off, {tier.term_periods} "
            f"{rp.spec.period_name}s) pay off for chips busy in more than {share:.0%} of the "
            f"{covered} {rp.spec.period_name}s they are held in the plan: the plan commits {what}"
        )
    if not out:
        out.append("no quota, budget or commitment binds: each model runs on its cheapest slices")
    return out


def report(rp: ResolvedPlan, po: PlanOffers, outcome: Outcome, started: float, time_limit_s: float) -> FleetPlan:
    spec = rp.spec
    T = rp.periods
    names = [pool.label for pool in spec.pools]
    sol = outcome.solution
    required = required_qps(rp)
    costs: list[PeriodCost] = []
    bill: list[PoolPeriod] = []
    purchases: list[CommitmentPurchase] = []
    models: list[ModelPeriod] = []
    total = bound = gap = served = None
    notes: list[str] = []
    bind: list[str] = []
    short: list[str] = []
    if sol is not None:
        tl = tally(rp, po, sol)
        hours = spec.period_hours
        for (p, c, s), chips in sorted(sol.commit.items()):
            tier = spec.pools[p].commitments[c]
            per_period = rp.chips[p].usd_per_chip_hour * (1 - tier.discount) * hours * chips
            purchases.append(
                CommitmentPurchase(
                    pool=names[p],
                    chip=rp.chips[p].name,
                    tier=tier.name,
                    start_period=s + 1,
                    term_periods=tier.term_periods,
                    chips=chips,
                    discount=tier.discount,
                    usd_per_period=per_period,
                    total_usd=per_period * charged_periods(rp, s, tier.term_periods),
                )
            )
        for t in range(T):
            od = sum(rp.chips[p].usd_per_chip_hour * hours * tl.on_demand[p][t] for p in range(len(names)))
            period_total = tl.period_cost_usd[t]
            costs.append(
                PeriodCost(
                    period=t + 1,
                    on_demand_usd=od,
                    committed_usd=period_total - od,
                    total_usd=period_total,
                    budget_usd=rp.budget[t] if rp.budget else None,
                )
            )
            for p in range(len(names)):
                shapes: dict[str, int] = {}
                for (mi, k, t2), n in sorted(sol.slices.items()):
                    o = po.offers[mi][k]
                    if t2 == t and o.pool == p:
                        shapes[o.config["topology"]] = shapes.get(o.config["topology"], 0) + n
                if tl.used[p][t] or tl.committed[p][t]:
                    bill.append(
                        PoolPeriod(
                            pool=names[p],
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
        for mi, pm in enumerate(spec.models):
            for t in range(T):
                entries = []
                for k, o in enumerate(po.offers[mi]):
                    n = sol.slices.get((mi, k, t), 0)
                    if n:
                        cfg = o.config
                        entries.append(
                            PlanEntry(
                                role=o.role,
                                pool=names[o.pool],
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
                models.append(
                    ModelPeriod(
                        model=pm.label,
                        period=t + 1,
                        demand_qps=d,
                        required_qps=required[mi][t],
                        capacity_qps=cap,
                        utilization=d / cap if cap > 0 else 0.0,
                        headroom_pct=100.0 * (cap - d) / d if d > 0 else None,
                        chips=tl.model_chips[mi][t],
                        entries=entries,
                    )
                )
        total = sum(c.on_demand_usd for c in costs) + sum(c.total_usd for c in purchases)
        if outcome.bound_usd_int is not None:
            bound = outcome.bound_usd_int / budget.USD_UNITS
            gap = max(0.0, (tl.cost_int - outcome.bound_usd_int) / tl.cost_int) if tl.cost_int else 0.0
        bind = binding(rp, po, sol, tl)
        short = shortfalls(rp, po, sol)
        if outcome.objective == "max-served":
            served = sum(
                min(tl.capacity_qps[mi][t], required[mi][t]) for mi in range(len(spec.models)) for t in range(T)
            )
        beyond = sum(c.total_usd - c.usd_per_period * min(c.term_periods, T - c.start_period + 1) for c in purchases)
        if beyond > 0:
            notes.append(
                f"commitments running past {spec.period_name} {T} add ${beyond:,.0f} to the total "
                "(full-term accounting: every period of a term is paid)"
            )
    if spec.profile == "calibrated":
        from optimizer.calibration import profile_notes

        notes += profile_notes(
            spec.calibration,
            spec.engine,
            any(m.serving != "decode-only" for m in spec.models),
            {c.name for c in rp.chips},
        )
    return FleetPlan(
        status=outcome.status,
        objective=outcome.objective,
        reason=outcome.reason,
        periods=T,
        period_name=spec.period_name,
        period_hours=spec.period_hours,
        headroom=spec.headroom,
        commitment_accounting=spec.commitment_accounting,
        total_cost_usd=total,
        bound_usd=bound,
        gap=gap,
        served_qps=served,
        required_qps=sum(sum(r) for r in required) if outcome.objective == "max-served" else None,
        costs=costs,
        bill=bill,
        commitments=purchases,
        models=models,
        binding=bind,
        shortfalls=short,
        solve=PlanStats(
            seconds=time.perf_counter() - started,
            solver_status=outcome.status,
            time_limit_s=time_limit_s,
            offers=po.count,
            offers_before_pruning=po.before_pruning,
            variables=outcome.variables,
            constraints=outcome.constraints,
        ),
        notes=notes,
        profile=spec.profile,
        engine=spec.engine,
    )
