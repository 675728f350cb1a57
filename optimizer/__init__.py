"""servesat: the cheapest way to serve an LLM, chosen by CP-SAT over a roofline cost model.

    from optimizer import Book, Calibrated, Search, Workload, optimize, evaluate, load_chips

Names are imported on first use (PEP 562), so the constraint families can import the
library's building blocks (optimizer.candidates, optimizer.scaling, ...) without a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "optimize": "optimizer.api",
    "evaluate": "optimizer.api",
    "Search": "optimizer.api",
    "Book": "optimizer.profiles",
    "Calibrated": "optimizer.profiles",
    "Profile": "optimizer.profiles",
    "resolve_profile": "optimizer.profiles",
    "frontier": "optimizer.frontier",
    "by_batch": "optimizer.frontier",
    "Chip": "optimizer.catalog",
    "Model": "optimizer.models",
    "builtin_models": "optimizer.models",
    "load_chips": "optimizer.catalog",
    "load_model": "optimizer.models",
    "InputError": "optimizer.errors",
    "Configuration": "optimizer.result",
    "Deployment": "optimizer.result",
    "Evaluation": "optimizer.result",
    "OptimizeResult": "optimizer.result",
    "PrefillServer": "optimizer.result",
    "SolveStats": "optimizer.result",
    "OBJECTIVES": "optimizer.workload",
    "SERVING": "optimizer.workload",
    "Workload": "optimizer.workload",
    "plan": "optimizer.planning",
    "FleetPlan": "optimizer.planning",
    "PlanSpec": "optimizer.planning",
    "PlanModel": "optimizer.planning",
    "Pool": "optimizer.planning",
    "Commitment": "optimizer.planning",
    "load_plan": "optimizer.planning",
}

__all__ = [
    "OBJECTIVES",
    "SERVING",
    "Book",
    "Calibrated",
    "Chip",
    "Commitment",
    "Configuration",
    "Deployment",
    "Evaluation",
    "FleetPlan",
    "InputError",
    "Model",
    "OptimizeResult",
    "PlanModel",
    "PlanSpec",
    "Pool",
    "PrefillServer",
    "Profile",
    "Search",
    "SolveStats",
    "Workload",
    "builtin_models",
    "by_batch",
    "evaluate",
    "frontier",
    "load_chips",
    "load_model",
    "load_plan",
    "optimize",
    "plan",
    "resolve_profile",
]

if TYPE_CHECKING:
    from optimizer.api import Search, evaluate, optimize
    from optimizer.catalog import Chip, load_chips
    from optimizer.errors import InputError
    from optimizer.frontier import by_batch, frontier
    from optimizer.models import Model, builtin_models, load_model
    from optimizer.planning import Commitment, FleetPlan, PlanModel, PlanSpec, Pool, load_plan, plan
    from optimizer.profiles import Book, Calibrated, Profile, resolve_profile
    from optimizer.result import (
        Configuration,
        Deployment,
        Evaluation,
        OptimizeResult,
        PrefillServer,
        SolveStats,
    )
    from optimizer.workload import OBJECTIVES, SERVING, Workload


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'optimizer' has no attribute {name!r}")
