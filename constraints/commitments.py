"""Commitments: the chips a period uses are committed or rented on demand.

    used[p,t] <= committed[p,t] + on_demand[p,t],   on_demand[p,t] = 0 if the pool rents none
    committed[p,t] = sum of chips under every commitment of p whose term covers period t

A commitment bought in period s for a term of L periods covers periods s .. s+L-1 and is
paid in each of them (beyond the plan's horizon too, under "full-term" accounting).
"""

from __future__ import annotations

from collections.abc import Sequence

from ortools.sat.python import cp_model

NAME = "commitments"


def covers(start: int, term: int, period: int) -> bool:
    return start <= period < start + term


def add(
    model: cp_model.CpModel,
    used: Sequence[Sequence[cp_model.LinearExpr]],
    committed: Sequence[Sequence[cp_model.LinearExpr]],
    on_demand: Sequence[Sequence[cp_model.IntVar]],
) -> None:
    for p, periods in enumerate(used):
        for t, expr in enumerate(periods):
            model.add(expr <= committed[p][t] + on_demand[p][t])


def check(
    used: Sequence[Sequence[int]],
    committed: Sequence[Sequence[int]],
    on_demand: Sequence[Sequence[int]],
    allows_on_demand: Sequence[bool],
    pools: Sequence[str],
) -> list[str]:
    """Solver-free: chips in use that are neither committed nor rented, or rentals a pool forbids."""
    out = []
    for p, periods in enumerate(used):
        for t, u in enumerate(periods):
            if u > committed[p][t] + on_demand[p][t]:
                out.append(
                    f"{pools[p]} period {t + 1}: {u} chips used, {committed[p][t]} committed, "
                    f"{on_demand[p][t]} on demand"
                )
            if on_demand[p][t] and not allows_on_demand[p]:
                out.append(f"{pools[p]} period {t + 1}: {on_demand[p][t]} chips on demand in a commitment-only pool")
    return out
