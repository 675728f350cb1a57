"""Quota: in every period, a pool's chips held stay within its availability.

    used[p,t] <= quota[p,t]        committed[p,t] <= quota[p,t]       (chips)

Chips held are the larger of those in use and those under commitment (committed chips are
held, and paid, whether used or not). Integer counts: exact.
"""

from __future__ import annotations

from collections.abc import Sequence

from ortools.sat.python import cp_model

NAME = "quota"


def add(
    model: cp_model.CpModel,
    used: Sequence[Sequence[cp_model.LinearExpr]],
    committed: Sequence[Sequence[cp_model.LinearExpr]],
    quota: Sequence[Sequence[int]],
) -> None:
    for p, limits in enumerate(quota):
        for t, limit in enumerate(limits):
            model.add(used[p][t] <= limit)
            model.add(committed[p][t] <= limit)


def check(
    used: Sequence[Sequence[int]],
    committed: Sequence[Sequence[int]],
    quota: Sequence[Sequence[int]],
    pools: Sequence[str],
) -> list[str]:
    """Solver-free: every (pool, period) whose chips held exceed the quota."""
    return [
        f"{pools[p]} period {t + 1}: {max(used[p][t], committed[p][t])} chips held, quota {limit}"
        for p, limits in enumerate(quota)
        for t, limit in enumerate(limits)
        if max(used[p][t], committed[p][t]) > limit
    ]
