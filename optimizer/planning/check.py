"""The solver-free checker of a plan (the test oracle): a solution's figures recomputed in
floating point from its integers (tally), and every constraint family it breaks (violations).
"""

from __future__ import annotations

from dataclasses import dataclass

from constraints import budget, commitments, quota
from constraints.demand import capacity_qps
from optimizer import scaling
from optimizer.planning.offers import PlanOffers
from optimizer.planning.spec import ResolvedPlan


@dataclass
class Solution:
    """A plan's integers: slices per (model, offer, period), chips per (pool, tier, start)."""

    slices: dict[tuple[int, int, int], int]
    commit: dict[tuple[int, int, int], int]


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
        cost_int += scaling.usd_int(per_period) * chips * rp.charged_periods(s, tier.term_periods)
        for t in range(s, min(s + tier.term_periods, T)):
            committed[p][t] += chips
            by_tier[p][t][tier.name] = by_tier[p][t].get(tier.name, 0) + chips
            cost[p][t] += per_period * chips
    on_demand = [[max(0, used[p][t] - committed[p][t]) for t in range(T)] for p in range(P)]
    for p in range(P):
        per_chip = rp.chips[p].usd_per_chip_hour * hours
        for t in range(T):
            cost[p][t] += per_chip * on_demand[p][t]
            cost_int += scaling.usd_int(per_chip) * on_demand[p][t]
    capacity = [[_capacity(rp, po, sol, mi, t) for t in range(T)] for mi in range(len(po.offers))]
    return Tally(used, committed, by_tier, on_demand, cost, capacity, model_chips, cost_int)


def _capacity(rp: ResolvedPlan, po: PlanOffers, sol: Solution, mi: int, t: int) -> float:
    """What model mi's slices in period t serve, in floating point (the demand family's rule)."""
    decode: list[tuple[str, float]] = []
    prefill: list[tuple[str, float]] = []
    for k, o in enumerate(po.offers[mi]):
        n = sol.slices.get((mi, k, t), 0)
        if n:
            (decode if o.role == "decode" else prefill).append((o.group, o.rate * n))
    return capacity_qps(decode, prefill, rp.prefill_servers[mi])


def violations(rp: ResolvedPlan, po: PlanOffers, sol: Solution, serve_all: bool = True) -> list[str]:
    """Solver-free: every violated constraint of a solution (empty: the plan is valid).
    serve_all=False (a max-served plan) skips the demand family."""
    tl = tally(rp, po, sol)
    out: list[str] = []
    names = [pool.label for pool in rp.spec.pools]
    if serve_all:
        for mi, row in enumerate(rp.required_qps):
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
