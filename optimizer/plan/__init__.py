"""Procurement planning (`servesat plan`): the cheapest fleet for a demand forecast over
several models, chip pools and periods, as one CP-SAT model.

    spec     the input: PlanSpec, PlanModel, Pool, Commitment, load_plan; validation
    offers   what each model can buy: slice offers, dominance pruning, cheapest covers
    model    the CP-SAT model: variables, constraint families, objective terms
    start    the greedy, commitment-aware starting plan (the solver's hint)
    solve    plan(): offers, model, hint, solver, and why a plan is infeasible
    check    the solver-free checker (the test oracle)
    explain  what binds, shortfalls, unservable models, in words
    result   FleetPlan and its parts, built from a solution
"""

from __future__ import annotations

import sys
import types
from typing import Any

from optimizer.plan.result import FleetPlan
from optimizer.plan.solve import plan
from optimizer.plan.spec import Commitment, PlanModel, PlanSpec, Pool, load_plan

__all__ = ["Commitment", "FleetPlan", "PlanModel", "PlanSpec", "Pool", "load_plan", "plan"]


class _CallablePackage(types.ModuleType):
    """Once this package is imported, Python binds it to the name `plan` of the optimizer
    package, where the function plan() is exported too: `from optimizer import plan` can then
    give the package, so calling the package calls plan()."""

    def __call__(self, *args: Any, **kwargs: Any) -> FleetPlan:
        return plan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
