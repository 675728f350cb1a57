"""Procurement planning (`servesat plan`): the cheapest fleet for a demand forecast over
several models, chip pools and periods, as one CP-SAT model.

    spec       the input: PlanSpec, PlanModel, Pool, Commitment, each validated on construction
    plan_file  load_plan: a plan file (TOML) read into a PlanSpec
    offers     what each model can buy: slice offers, dominance pruning, cheapest covers
    model      the CP-SAT model: variables, constraint families, objective terms
    start      the greedy, commitment-aware starting plan (the solver's hint)
    solve      plan(): offers, model, hint, solver, and why a plan is infeasible
    check      the solver-free checker (the test oracle)
    explain    what binds, shortfalls, unservable models, in words
    result     FleetPlan and its parts, built from a solution
"""

from __future__ import annotations

from optimizer.planning.plan_file import load_plan
from optimizer.planning.result import FleetPlan
from optimizer.planning.solve import plan
from optimizer.planning.spec import Commitment, PlanModel, PlanSpec, Pool

__all__ = ["Commitment", "FleetPlan", "PlanModel", "PlanSpec", "Pool", "load_plan", "plan"]
