"""Budget: each period's bill (on-demand rentals plus the commitments it pays) stays within
the period's budget.

    sum_p price_p * hours * on_demand[p,t] + sum_{commitments covering t} price_c * hours * chips_c <= budget_t

In micro-dollars: each chip-period's price rounded to the nearest micro-dollar, the budget
rounded down, so an integer plan within budget is within it in dollars up to those roundings
(under a micro-dollar per chip-period); the solver-free check recomputes it in dollars.
"""

from __future__ import annotations

from collections.abc import Sequence

from ortools.sat.python import cp_model

from optimizer.scaling import usd_limit_int

NAME = "budget"


def add(model: cp_model.CpModel, period_cost: Sequence[cp_model.LinearExprT], budget: Sequence[float]) -> None:
    for cost, limit in zip(period_cost, budget):
        model.add(cost <= usd_limit_int(limit))


def check(period_cost_usd: Sequence[float], budget: Sequence[float], tolerance_usd: float = 1e-3) -> list[str]:
    """Solver-free: every period whose bill exceeds its budget (beyond rounding)."""
    return [
        f"period {t + 1}: bill ${cost:,.2f} over the budget of ${limit:,.2f}"
        for t, (cost, limit) in enumerate(zip(period_cost_usd, budget))
        if cost > limit + tolerance_usd
    ]
