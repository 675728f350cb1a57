"""CP-SAT's solve statuses as servesat reports them, in one place.

"optimal" and "feasible" come with a solution; "infeasible" is proven; "unknown" means the
time limit (or an interruption) came first. An invalid model is servesat's bug, never an
answer: it raises with the solver's validation message.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

_NAMES = {
    cp_model.OPTIMAL: "optimal",
    cp_model.FEASIBLE: "feasible",
    cp_model.INFEASIBLE: "infeasible",
    cp_model.UNKNOWN: "unknown",
}
#: The statuses that come with a solution.
SOLVED = ("optimal", "feasible")


def status_name(solver: cp_model.CpSolver, status: cp_model.CpSolverStatus) -> str:
    """The name servesat reports for the status `solver.solve` returned.

    Raises RuntimeError for MODEL_INVALID, with CP-SAT's validation message."""
    if status == cp_model.MODEL_INVALID:
        detail = solver.solution_info() or "no detail given"
        raise RuntimeError(f"CP-SAT rejected the model as invalid (a servesat bug): {detail}")
    return _NAMES.get(status, "unknown")
