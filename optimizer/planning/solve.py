"""plan(): a plan's offers, its CP-SAT model and starting hint, the solve (min-cost, or
max-served then min-cost), and why an infeasible plan falls short."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ortools.sat.python import cp_model

from optimizer.catalog import Chip, load_chips
from optimizer.errors import InputError
from optimizer.planning.check import Solution
from optimizer.planning.explain import shortfalls, unservable
from optimizer.planning.model import FleetModel
from optimizer.planning.offers import PlanOffers, build_offers
from optimizer.planning.plan_file import load_plan
from optimizer.planning.result import FleetPlan, Outcome, fleet_plan
from optimizer.planning.spec import PlanSpec, ResolvedPlan, resolve
from optimizer.planning.start import apply_hint, greedy_start
from optimizer.profiles import Profile
from optimizer.scaling import objective_bound_int
from optimizer.solve_status import SOLVED, status_name


def plan(
    spec: PlanSpec | str | Path,
    *,
    chips: dict[str, Chip] | None = None,
    time_limit_s: float = 10.0,
    maximize_served: bool = False,
    workers: int = 2,
    profile: Profile | None = None,
) -> FleetPlan:
    """The cheapest fleet (or, with maximize_served, the most demand served and then the
    cheapest such fleet) for a plan; a `profile` (Book(), Calibrated(params, engine)) replaces
    the plan's cost model (PlanSpec.with_profile overrides it by name, as the command line does).
    Raises InputError (a ValueError) naming the bad field;
    a plan that cannot be met is a FleetPlan with status "infeasible" and the reason."""
    started = time.perf_counter()
    if isinstance(spec, (str, Path)):
        spec = load_plan(spec, chips)
    if not isinstance(spec, PlanSpec):
        raise InputError(f"plan must be a PlanSpec or a plan file path, got {type(spec).__name__}")
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float)) or not time_limit_s > 0:
        raise InputError(f"time_limit_s (--time-limit) must be a positive number of seconds, got {time_limit_s!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    if profile is not None:
        spec = replace(spec, profile=profile, engine=None, calibration=None)
    rp = resolve(spec, chips if chips is not None else load_chips())
    po = build_offers(rp)
    objective = "max-served" if maximize_served else "min-cost"
    reason = unservable(rp, po)
    if reason is not None:
        return fleet_plan(rp, po, Outcome("infeasible", objective, reason=reason), started, time_limit_s)
    deadline = started + time_limit_s  # the limit covers building the offers and the model too
    outcome = solve_plan(rp, po, deadline, workers, maximize_served)
    if outcome.status == "infeasible":
        outcome.reason = shortfall_reason(rp, po, deadline, workers)
    return fleet_plan(rp, po, outcome, started, time_limit_s)


def solve_plan(rp: ResolvedPlan, po: PlanOffers, deadline: float, workers: int, maximize_served: bool) -> Outcome:
    """Build and solve the plan's model by `deadline` (time.perf_counter()); the chosen
    integers, or a status without them."""
    # the cover cuts' cheapest deployments and split solves may take a fifth of the time left
    fm = FleetModel(rp, po, maximize_served, split_until=time.perf_counter() + _left(deadline) / 5)
    start = greedy_start(fm)
    size = len(fm.model.proto.variables), len(fm.model.proto.constraints)
    bound = sum(fm.cut_bounds.values())
    if not maximize_served and start.cost <= bound:
        # Every plan costs at least the cover cuts' bounds summed (each model and period's
        # slices cost at least its bound at cut_unit prices, and the objective charges at
        # least cut_unit per chip and period): a start that costs no more is optimal, proven
        # without searching the full model (the cuts' split bounds are CP-SAT's own proofs).
        # Plans whose quotas, budget and commitments do not make the models compete can end here.
        solution = Solution(start.values, start.commits)
        return Outcome(
            "optimal", "min-cost", solution, bound, proven_by="cover bounds", variables=size[0], constraints=size[1]
        )
    apply_hint(fm, start)
    outcome = _most_served_then_cheapest(fm, deadline, workers) if maximize_served else _cheapest(fm, deadline, workers)
    outcome.variables, outcome.constraints = size
    return outcome


def _cheapest(fm: FleetModel, deadline: float, workers: int) -> Outcome:
    fm.model.minimize(fm.total_cost)
    solver = _solver(_left(deadline), workers)
    status = status_name(solver, solver.solve(fm.model))
    if status not in SOLVED:
        reason = None if status == "infeasible" else "the solver found no plan within the time limit"
        return Outcome(status, "min-cost", reason=reason)
    bound = objective_bound_int(solver.best_objective_bound)
    return Outcome(status, "min-cost", solution=_solution(fm, solver), bound_usd_int=bound)


def _most_served_then_cheapest(fm: FleetModel, deadline: float, workers: int) -> Outcome:
    """Two solves: the most queries per second served (half the time left), then the
    cheapest plan serving that much."""
    total_served = sum((v for row in fm.served for v in row), start=0)
    fm.model.maximize(total_served)
    solver = _solver(_left(deadline) / 2, workers)
    first = status_name(solver, solver.solve(fm.model))
    if first not in SOLVED:
        return Outcome(first, "max-served")
    fm.model.add(total_served >= round(solver.objective_value))
    _hint_from(fm, solver)
    fm.model.minimize(fm.total_cost)
    solver = _solver(_left(deadline), workers)
    status = status_name(solver, solver.solve(fm.model))
    if status not in SOLVED:
        return Outcome(status, "max-served")
    if first == "feasible":
        status = "feasible"  # the cheapest plan for a served total that may not be the most
    return Outcome(status, "max-served", solution=_solution(fm, solver))


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


def _left(deadline: float) -> float:
    """Seconds to the deadline (a tenth of a second at least, so a late call still solves)."""
    return max(0.1, deadline - time.perf_counter())


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


def _hint_from(fm: FleetModel, solver: cp_model.CpSolver) -> None:
    """Hint every variable with its value in the solver's last solution (a complete hint)."""
    fm.model.clear_hints()
    for i in range(len(fm.model.proto.variables)):
        var = fm.model.get_int_var_from_proto_index(i)
        fm.model.add_hint(var, solver.value(var))


def shortfall_reason(rp: ResolvedPlan, po: PlanOffers, deadline: float, workers: int) -> str:
    """Why a plan is infeasible: the most it can serve, and which models and periods fall short."""
    most = solve_plan(rp, po, max(deadline, time.perf_counter() + 1.0), workers, maximize_served=True)
    if most.solution is None:
        return "no plan meets the quotas and budget, and none was found that serves part of the demand"
    short = shortfalls(rp, po, most.solution)
    limits = "the quotas" + (" and the budget" if rp.budget is not None else "")
    return f"{limits} cannot serve every model's forecast: " + "; ".join(short)
