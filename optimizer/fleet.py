"""Procurement planning: the cheapest fleet for a demand forecast, as one CP-SAT model.

Decisions (all integers), for every model m, pool p, period t:
  slices[m,o,t]    slices of offer o (a decode or prefill configuration of m on pool p,
                   optimizer.offers) held in period t
  commit[p,c,s]    chips of pool p committed under tier c from period s (held and paid in
                   every period of the term)
  on_demand[p,t]   chips of pool p rented on demand in period t
Constraint families (constraints/): demand (every model's forecast x (1 + headroom) routed
over dtype pairs, decode and prefill capacity each covering it, micro-QPS), commitments
(chips used <= committed + on demand), quota (chips used and chips committed <= the
pool's availability), budget (each period's bill). Objective: the horizon's cost in
micro-dollars, or with maximize_served first the most queries per second served (summed over
models and periods), then the cheapest plan serving that.

The integer model is exact for the offers it is given: rates are rounded down and demand
up (an integer plan serves the forecast in floating point too), prices are rounded to
micro-dollars per chip-period. Every reported number is recomputed in floating point from
the chosen integers, and check_plan re-verifies every family without the solver.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ortools.sat.python import cp_model

from constraints import budget, commitments, demand, quota
from constraints.demand import Offer
from optimizer.catalog import Chip, load_chips, load_model
from optimizer.errors import InputError
from optimizer.offers import cheapest_deployment, cover_lower_bound, model_offers, prune
from optimizer.plan_report import (
    Outcome,
    PlanOffers,
    Solution,
    charged_periods,
    check_plan,
    report,
    required_qps,
    shortfalls,
    unservable,
)
from optimizer.plan_result import FleetPlan
from optimizer.plan_spec import PlanSpec, ResolvedPlan, load_plan, resolve

STATUS = {
    cp_model.OPTIMAL: "optimal",
    cp_model.FEASIBLE: "feasible",
    cp_model.INFEASIBLE: "infeasible",
    cp_model.MODEL_INVALID: "model_invalid",
    cp_model.UNKNOWN: "unknown",
}
#: Largest forecast a plan represents (micro-QPS and micro-dollar sums stay inside int64).
MAX_PLAN_QPS = 1e6


def build_offers(rp: ResolvedPlan) -> PlanOffers:
    models = []
    offers = []
    raw = 0
    for k, pm in enumerate(rp.spec.models):
        try:
            mdl = load_model(pm.model)
        except InputError as e:
            raise InputError(f"models[{k}].model: {e}") from None
        models.append(mdl)
        wl = rp.spec.workload(pm)
        found = model_offers(k, mdl, wl, rp.chips, pm.weights, pm.kv)
        raw += len(found)
        offers.append(prune(found, wl.prefill_servers))
    return PlanOffers(models, offers, raw)


@dataclass
class Start:
    """A complete plan to start the solver from: slices per (model, offer, period), chips in
    use per pool and period, chips committed per (pool, tier, start period), and its cost in
    micro-dollars (inf: not a valid plan)."""

    values: dict[tuple[int, int, int], int]
    used: list[list[int]]
    commits: dict[tuple[int, int, int], int]
    cost: float


class FleetModel:
    """The CP-SAT model of a plan; one add_* method per constraint family."""

    def __init__(self, rp: ResolvedPlan, po: PlanOffers, maximize_served: bool) -> None:
        self.rp, self.po = rp, po
        self.maximize_served = maximize_served
        self.model = m = cp_model.CpModel()
        T = rp.periods
        self.required = required_qps(rp)
        hours = rp.spec.period_hours
        self.on_demand_unit = [budget.usd_int(c.usd_per_chip_hour * hours) for c in rp.chips]
        self.tiers = [pool.commitments for pool in rp.spec.pools]
        self.commit_unit = [
            [budget.usd_int(c.usd_per_chip_hour * (1 - tier.discount) * hours) for tier in tiers]
            for c, tiers in zip(rp.chips, self.tiers)
        ]
        # a lower bound on what a chip costs per period in each pool: committed or on demand
        self.lowest_unit = [
            min(units + ([u] if pool.on_demand else []))
            for u, units, pool in zip(self.on_demand_unit, self.commit_unit, rp.spec.pools)
        ]
        # slices[m][k][t]: None where the model has nothing to serve in period t
        self.slices: list[list[list[cp_model.IntVar | None]]] = []
        for mi, offers in enumerate(po.offers):
            rows = []
            for k, o in enumerate(offers):
                rate = Offer(k, o.group, o.rate, 0.0).rate_int
                row: list[cp_model.IntVar | None] = []
                for t in range(T):
                    q = demand.demand_int(self.required[mi][t])
                    most = min(-(-q // rate) if rate else 0, rp.quota[o.pool][t] // o.chips)
                    row.append(m.new_int_var(0, most, f"slices[{mi},{k},{t}]") if q > 0 and most > 0 else None)
                rows.append(row)
            self.slices.append(rows)
        terms: list[list[tuple[list[cp_model.IntVar], list[int]]]] = [[([], []) for _ in range(T)] for _ in rp.chips]
        for mi, offers in enumerate(po.offers):
            for k, o in enumerate(offers):
                for t, n in enumerate(self.slices[mi][k]):
                    if n is not None:
                        terms[o.pool][t][0].append(n)
                        terms[o.pool][t][1].append(o.chips)
        self.used = [[cp_model.LinearExpr.weighted_sum(v, c) for v, c in row] for row in terms]
        # commit[p][c][s]: chips bought in period s; bounded by the quota of the periods it covers
        self.commit: list[list[list[cp_model.IntVar]]] = []
        for p, tiers in enumerate(self.tiers):
            first_only = starts_first_only(rp, p)
            per_tier = []
            for c, tier in enumerate(tiers):
                per_tier.append(
                    [
                        m.new_int_var(
                            0,
                            min(rp.quota[p][s : s + tier.term_periods]) if s == 0 or not first_only else 0,
                            f"commit[{p},{c},{s}]",
                        )
                        for s in range(T)
                    ]
                )
            self.commit.append(per_tier)
        self.committed = [
            [
                cp_model.LinearExpr.sum(
                    [
                        self.commit[p][c][s]
                        for c, tier in enumerate(tiers)
                        for s in range(T)
                        if commitments.covers(s, tier.term_periods, t)
                    ]
                )
                for t in range(T)
            ]
            for p, tiers in enumerate(self.tiers)
        ]
        self.on_demand = [
            [m.new_int_var(0, rp.quota[p][t] if pool.on_demand else 0, f"on_demand[{p},{t}]") for t in range(T)]
            for p, pool in enumerate(rp.spec.pools)
        ]
        self.served: list[list[cp_model.IntVar]] = []
        self.routed: dict[tuple[int, int], dict[str, cp_model.IntVar]] = {}
        self.period_cost = []
        for t in range(T):
            variables = [self.on_demand[p][t] for p in range(len(rp.chips))]
            coefs = list(self.on_demand_unit)
            for p, tiers in enumerate(self.tiers):
                for c, tier in enumerate(tiers):
                    for s in range(T):
                        if commitments.covers(s, tier.term_periods, t):
                            variables.append(self.commit[p][c][s])
                            coefs.append(self.commit_unit[p][c])
            self.period_cost.append(cp_model.LinearExpr.weighted_sum(variables, coefs))
        variables = [v for row in self.on_demand for v in row]
        coefs = [self.on_demand_unit[p] for p in range(len(rp.chips)) for _ in range(T)]
        for p, tiers in enumerate(self.tiers):
            for c, tier in enumerate(tiers):
                for s in range(T):
                    variables.append(self.commit[p][c][s])
                    coefs.append(self.commit_unit[p][c] * charged_periods(rp, s, tier.term_periods))
        self.total_cost = cp_model.LinearExpr.weighted_sum(variables, coefs)
        self.add_demand()
        self.add_commitments()
        self.add_quota()
        self.add_budget()
        self.add_cover_cuts()

    def add_demand(self) -> None:
        for mi, offers in enumerate(self.po.offers):
            with_prefill = self.rp.spec.workload(self.rp.spec.models[mi]).prefill_servers
            served_row = []
            for t in range(self.rp.periods):
                q = demand.demand_int(self.required[mi][t])
                d_off: list[Offer] = []
                p_off: list[Offer] = []
                d_var: list[cp_model.IntVar] = []
                p_var: list[cp_model.IntVar] = []
                for k, o in enumerate(offers):
                    n = self.slices[mi][k][t]
                    if n is None:
                        continue
                    offer = Offer(k, o.group, o.rate, 0.0)
                    (d_off if o.role == "decode" else p_off).append(offer)
                    (d_var if o.role == "decode" else p_var).append(n)
                served: cp_model.IntVar | None = None
                if self.maximize_served:
                    served = self.model.new_int_var(0, q, f"served[{mi},{t}]")
                    served_row.append(served)
                if q > 0 and not d_off and not self.maximize_served:
                    self.model.add_bool_or([])  # no slice of this model fits in any pool: infeasible
                elif q > 0:
                    self.routed[(mi, t)] = demand.add(
                        self.model,
                        self.required[mi][t],
                        d_off,
                        d_var,
                        p_off,
                        p_var,
                        with_prefill,
                        served=served,
                        name=f"[{mi},{t}]",
                    )
            self.served.append(served_row)

    def add_commitments(self) -> None:
        commitments.add(self.model, self.used, self.committed, self.on_demand)

    def add_quota(self) -> None:
        quota.add(self.model, self.used, self.committed, self.rp.quota)

    def add_budget(self) -> None:
        if self.rp.budget is not None:
            budget.add(self.model, self.period_cost, self.rp.budget)

    def add_cover_cuts(self) -> None:
        """Per model and period, a valid inequality that tightens the LP relaxation where slices
        are lumpy: its slices, priced at each pool's cheapest chip-period (committed or on
        demand), cost at least the cheapest integer decode cover plus the cheapest integer
        prefill cover of its load at those prices (optimizer.offers.cover_lower_bound: over
        every dtype pair, quotas ignored). Every integer plan satisfies it; the LP relaxation
        alone would buy a fraction of a slice."""
        for mi, offers in enumerate(self.po.offers):
            for t in range(self.rp.periods):
                q = demand.demand_int(self.required[mi][t])
                live = [k for k, row in enumerate(self.slices[mi]) if row[t] is not None]
                if q == 0 or not live or self.maximize_served:
                    continue
                weight = {k: offers[k].chips * self.lowest_unit[offers[k].pool] for k in live}
                bound = cover_lower_bound(
                    offers, q, live, weight, self.rp.spec.workload(self.rp.spec.models[mi]).prefill_servers
                )
                if bound:
                    row = [self.slices[mi][k][t] for k in live]
                    self.model.add(cp_model.LinearExpr.weighted_sum(row, [weight[k] for k in live]) >= bound)

    def _cheapest(self, mi: int, q: int, live: list[int], weight: dict[int, int]) -> tuple[int, dict[int, int]]:
        return cheapest_deployment(
            self.po.offers[mi], q, live, weight, self.rp.spec.workload(self.rp.spec.models[mi]).prefill_servers
        )

    def greedy_start(self) -> Start:
        """A complete starting plan. Per period, each model (largest load first) takes the
        cheapest integer cover of its load among the pools with chips left; per pool, the
        commitment from the first period that saves the most on the chips so used. Covers are
        priced at on-demand prices, at each pool's cheapest (committed) price, and again as
        the best plan's commitments price each pool; the cheapest plan is the start."""
        best: Start | None = None
        units = [self.on_demand_unit, self.lowest_unit]
        while units:
            values, used = self._greedy_usage(units.pop(0))
            found = self._start(values, used)
            if best is None or found.cost < best.cost:
                best = found
                tier = {p: c for (p, c, _) in found.commits}
                units.append(
                    [
                        self.commit_unit[p][tier[p]] if p in tier else self.on_demand_unit[p]
                        for p in range(len(self.rp.chips))
                    ]
                )
        assert best is not None
        return best

    def _start(self, values: dict[tuple[int, int, int], int], used: list[list[int]]) -> Start:
        """A Start for these slices with, per pool, the best single commitment from the first
        period. Its cost is inf if the plan breaks a constraint."""
        commits = {}
        for p in range(len(self.rp.chips)):
            tier, chips = self._best_commitment(p, used[p])
            if chips:
                commits[(p, tier, 0)] = chips
        valid = not check_plan(self.rp, self.po, Solution(values, commits))
        return Start(values, used, commits, self._cost(used, commits) if valid else math.inf)

    def held(self, commits: dict[tuple[int, int, int], int], p: int, t: int) -> int:
        """Chips of pool p under commitment in period t."""
        return sum(
            n for (q, c, s), n in commits.items() if q == p and commitments.covers(s, self.tiers[q][c].term_periods, t)
        )

    def apply_hint(self, start: Start) -> None:
        """Hint every variable (a complete hint) with a starting plan."""
        self.model.clear_hints()
        values, used = start.values, start.used
        for mi, rows in enumerate(self.slices):
            for k, row in enumerate(rows):
                for t, var in enumerate(row):
                    if var is not None:
                        self.model.add_hint(var, values.get((mi, k, t), 0))
        for (mi, t), routed in self.routed.items():
            # the whole load to the dtype pair the plan deploys (if any); others get none
            groups = {self.po.offers[mi][k].group for (m2, k, t2) in values if m2 == mi and t2 == t}
            target = min(groups) if groups else None
            for g, var in routed.items():
                self.model.add_hint(var, demand.demand_int(self.required[mi][t]) if g == target else 0)
        for p, tiers in enumerate(self.commit):
            for c, starts in enumerate(tiers):
                for s, var in enumerate(starts):
                    self.model.add_hint(var, start.commits.get((p, c, s), 0))
            for t, var in enumerate(self.on_demand[p]):
                self.model.add_hint(var, max(0, used[p][t] - self.held(start.commits, p, t)))

    def _greedy_usage(self, unit: list[int]) -> tuple[dict[tuple[int, int, int], int], list[list[int]]]:
        rp = self.rp
        values: dict[tuple[int, int, int], int] = {}
        used = [[0] * rp.periods for _ in rp.chips]
        for t in range(rp.periods):
            left = [rp.quota[p][t] for p in range(len(rp.chips))]
            for mi in sorted(range(len(self.po.offers)), key=lambda mi: -self.required[mi][t]):
                q = demand.demand_int(self.required[mi][t])
                offers = self.po.offers[mi]
                live = [k for k, row in enumerate(self.slices[mi]) if row[t] is not None]
                while q > 0 and live:
                    _, counts = self._cheapest(mi, q, live, {k: offers[k].chips * unit[offers[k].pool] for k in live})
                    need = [0] * len(left)
                    for k, n in counts.items():
                        need[offers[k].pool] += n * offers[k].chips
                    over = {p for p, n in enumerate(need) if n > left[p]}
                    if counts and not over:
                        for k, n in counts.items():
                            values[(mi, k, t)] = n
                            left[offers[k].pool] -= n * offers[k].chips
                            used[offers[k].pool][t] += n * offers[k].chips
                        break
                    live = [k for k in live if offers[k].pool not in over] if over else []
        return values, used

    def _best_commitment(self, p: int, used: list[int]) -> tuple[int, int]:
        """(tier, chips) bought in the first period that minimizes the pool's cost for this
        usage ((-1, 0): rent everything); a pool without on-demand commits its peak."""
        T = self.rp.periods
        rents = self.rp.spec.pools[p].on_demand
        best = (self._cost_one(p, used, {}) if rents else math.inf, -1, 0)
        for c, tier in enumerate(self.tiers[p]):
            covered = used[: tier.term_periods]
            levels = sorted(set(covered) | {0}) if rents else [max(used, default=0)]
            for chips in levels:
                if not rents and any(u > chips for u in used[tier.term_periods : T]):
                    continue
                cost = self._cost_one(p, used, {(p, c, 0): chips})
                if cost < best[0]:
                    best = (cost, c, chips)
        return best[1], best[2]

    def _cost_one(self, p: int, used: list[int], commits: dict[tuple[int, int, int], int]) -> float:
        rent = sum(self.on_demand_unit[p] * max(0, u - self.held(commits, p, t)) for t, u in enumerate(used))
        return rent + sum(
            self.commit_unit[q][c] * n * charged_periods(self.rp, s, self.tiers[q][c].term_periods)
            for (q, c, s), n in commits.items()
            if q == p
        )

    def _cost(self, used: list[list[int]], commits: dict[tuple[int, int, int], int]) -> float:
        return sum(self._cost_one(p, used[p], commits) for p in range(len(used)))


def starts_first_only(rp: ResolvedPlan, p: int) -> bool:
    """Whether pool p's commitments need only start in the first period: under full-term
    accounting, with every term reaching past the horizon, a constant quota and no budget, a
    later start pays the same for a subset of the periods, and moving every commitment to the
    first period keeps the chips held at their final level, within the (constant) quota.
    Exact. (A budget can make an early start unaffordable, so then every start is kept.)"""
    tiers = rp.spec.pools[p].commitments
    return (
        rp.spec.commitment_accounting == "full-term"
        and all(t.term_periods >= rp.periods for t in tiers)
        and len(set(rp.quota[p])) == 1
        and rp.budget is None
    )


def _solver(time_limit_s: float, workers: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = 0
    solver.parameters.max_time_in_seconds = time_limit_s
    # One full-problem worker with the strongest LP relaxation (the cover cuts close most of the
    # gap through it); the other threads run large-neighbourhood search from the hint.
    solver.parameters.linearization_level = 2
    solver.parameters.subsolvers.append("max_lp")
    return solver


def plan(
    spec: PlanSpec | str | Path,
    *,
    chips: dict[str, Chip] | None = None,
    time_limit_s: float = 10.0,
    maximize_served: bool = False,
    workers: int = 2,
    profile: str | None = None,
    engine: str | None = None,
    calibration: str | None = None,
) -> FleetPlan:
    """The cheapest fleet (or, with maximize_served, the most demand served and then the
    cheapest such fleet) for a plan; profile/engine/calibration override the plan's cost model.
    Raises InputError (a ValueError) naming the bad field;
    a plan that cannot be met is a FleetPlan with status "infeasible" and the reason."""
    started = time.perf_counter()
    if isinstance(spec, (str, Path)):
        spec = load_plan(spec)
    if not isinstance(spec, PlanSpec):
        raise InputError(f"plan must be a PlanSpec or a plan file path, got {type(spec).__name__}")
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float)) or not time_limit_s > 0:
        raise InputError(f"time_limit_s (--time-limit) must be a positive number of seconds, got {time_limit_s!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    if profile is not None or engine is not None or calibration is not None:
        spec = replace(
            spec,
            profile=profile or spec.profile,
            engine=engine or spec.engine,
            calibration=calibration or spec.calibration,
        )
    rp = resolve(spec, chips if chips is not None else load_chips())
    for k, row in enumerate(rp.demand):
        for t, d in enumerate(row):
            if d * (1 + spec.headroom) > MAX_PLAN_QPS:
                raise InputError(
                    f"models[{k}].demand_qps[{t}] with headroom is above {MAX_PLAN_QPS:g} queries/s, "
                    "beyond what the plan's integers represent exactly"
                )
    po = build_offers(rp)
    objective = "max-served" if maximize_served else "min-cost"
    reason = unservable(rp, po)
    if reason is not None:
        return report(rp, po, Outcome("infeasible", objective, reason=reason), started, time_limit_s)
    deadline = started + time_limit_s  # the limit covers building the offers and the model too
    outcome = solve_plan(rp, po, deadline, workers, maximize_served)
    if outcome.status == "infeasible":
        outcome.reason = shortfall_reason(rp, po, deadline, workers)
    return report(rp, po, outcome, started, time_limit_s)


def _left(deadline: float) -> float:
    """Seconds to the deadline (a tenth of a second at least, so a late call still solves)."""
    return max(0.1, deadline - time.perf_counter())


def solve_plan(rp: ResolvedPlan, po: PlanOffers, deadline: float, workers: int, maximize_served: bool) -> Outcome:
    """Build and solve the plan's model by `deadline` (time.perf_counter()); the chosen
    integers, or a status without them."""
    fm = FleetModel(rp, po, maximize_served)
    fm.apply_hint(fm.greedy_start())
    objective = "max-served" if maximize_served else "min-cost"
    size = (len(fm.model.proto.variables), len(fm.model.proto.constraints))
    if maximize_served:
        total_served = sum((v for row in fm.served for v in row), start=0)
        fm.model.maximize(total_served)
        solver = _solver(_left(deadline) / 2, workers)
        status = solver.solve(fm.model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Outcome(STATUS.get(status, "unknown"), objective, variables=size[0], constraints=size[1])
        first_status = status
        fm.model.add(total_served >= round(solver.objective_value))
        _hint_from(fm, solver)
        fm.model.minimize(fm.total_cost)
        solver = _solver(_left(deadline), workers)
        status = solver.solve(fm.model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Outcome(STATUS.get(status, "unknown"), objective, variables=size[0], constraints=size[1])
        if first_status == cp_model.FEASIBLE:
            status = cp_model.FEASIBLE  # the cheapest plan for a served total that may not be the most
        return Outcome(
            STATUS[status],
            objective,
            solution=_solution(fm, solver),
            bound_usd_int=None,
            variables=size[0],
            constraints=size[1],
        )
    fm.model.minimize(fm.total_cost)
    solver = _solver(_left(deadline), workers)
    status = solver.solve(fm.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        reason = None if status == cp_model.INFEASIBLE else "the solver found no plan within the time limit"
        return Outcome(STATUS.get(status, "unknown"), objective, reason=reason, variables=size[0], constraints=size[1])
    return Outcome(
        STATUS[status],
        objective,
        solution=_solution(fm, solver),
        bound_usd_int=math.ceil(solver.best_objective_bound - 1e-9),
        variables=size[0],
        constraints=size[1],
    )


def _solution(fm: FleetModel, solver: cp_model.CpSolver) -> Solution:
    slices = {
        (mi, k, t): solver.value(v)
        for mi, rows in enumerate(fm.slices)
        for k, row in enumerate(rows)
        for t, v in enumerate(row)
        if v is not None and solver.value(v) > 0
    }
    commit = {
        (p, c, s): solver.value(v)
        for p, tiers in enumerate(fm.commit)
        for c, starts in enumerate(tiers)
        for s, v in enumerate(starts)
        if solver.value(v) > 0
    }
    return Solution(slices, commit)


def shortfall_reason(rp: ResolvedPlan, po: PlanOffers, deadline: float, workers: int) -> str:
    """Why a plan is infeasible: the most it can serve, and which models and periods fall short."""
    most = solve_plan(rp, po, max(deadline, time.perf_counter() + 1.0), workers, maximize_served=True)
    if most.solution is None:
        return "no plan meets the quotas and budget, and none was found that serves part of the demand"
    short = shortfalls(rp, po, most.solution)
    limits = "the quotas" + (" and the budget" if rp.budget is not None else "")
    return f"{limits} cannot serve every model's forecast: " + "; ".join(short)


def _hint_from(fm: FleetModel, solver: cp_model.CpSolver) -> None:
    """Hint every variable with its value in the solver's last solution (a complete hint)."""
    fm.model.clear_hints()
    for i in range(len(fm.model.proto.variables)):
        var = fm.model.get_int_var_from_proto_index(i)
        fm.model.add_hint(var, solver.value(var))
