"""Shared plumbing of the families: integer caps checked against the float model, and posting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ortools.sat.python import cp_model

from optimizer.scaling import UNBOUNDED


def verified_caps(
    caps: np.ndarray, satisfied: Callable[[np.ndarray, np.ndarray], np.ndarray], floor: np.ndarray | None = None
) -> np.ndarray:
    """Snap integer caps to the float model's boundary.

    Scaling rounds usage up and capacity down, so a cap can fall short where the float
    inequality holds with equality (round figures make that common), or by more where a
    per-sequence time is a few hundred femtoseconds and the cap is huge. Each bounded cap is
    moved to the largest batch the float check accepts (galloping, then bisection; every
    family only tightens as the batch grows), so the integer model admits exactly the float
    model's batches, never one it rejects. `floor` (optional, per row): a batch at or below the
    boundary where the family knows one (checked like the rest: a wrong floor costs steps, not
    answers), where the search of a rejected cap starts instead of at 0.
    """
    caps = caps.copy()
    rows = np.flatnonzero(caps < UNBOUNDED)
    if len(rows) == 0:
        return caps

    def ok(r: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (b == 0) | satisfied(r, np.maximum(b, 1))

    c = caps[rows]
    # lo: a batch the float check accepts (0 stands for "none"); hi: one it rejects. Each step
    # checks only the rows still moving (the check is row by row, so the others' answers stand).
    accepted = ok(rows, c)
    lo = np.where(accepted, c, 0)
    hi = np.where(accepted, c + 1, c)
    if floor is not None:
        k = np.flatnonzero(~accepted)
        start = np.clip(floor[rows[k]], 0, c[k] - 1)
        k, start = k[start > 0], start[start > 0]
        good = ok(rows[k], start)
        lo[k[good]] = start[good]
        hi[k[~good]] = start[~good]
    step = np.ones_like(c)
    k = np.flatnonzero(accepted)
    k = k[ok(rows[k], hi[k]) & (hi[k] < UNBOUNDED)]
    while len(k):
        lo[k] = hi[k]
        step[k] *= 2
        hi[k] = np.minimum(hi[k] + step[k], UNBOUNDED)
        k = k[ok(rows[k], hi[k]) & (hi[k] < UNBOUNDED)]
    k = np.flatnonzero(hi - lo > 1)
    while len(k):
        mid = (lo[k] + hi[k]) // 2
        good = ok(rows[k], mid)
        lo[k[good]] = mid[good]
        hi[k[~good]] = mid[~good]
        k = k[hi[k] - lo[k] > 1]
    caps[rows] = lo
    return caps


def add_caps(
    model: cp_model.CpModel, pick: Sequence[cp_model.IntVar], batch: cp_model.IntVar, caps: np.ndarray
) -> None:
    """batch <= cap[i] for the picked candidate i, as the single linear row
    batch <= sum_i cap[i] * pick[i] (exactly one pick is true, so the sum is the picked cap).
    Rows the family does not limit take the batch variable's own upper bound."""
    if len(pick) == 0:
        return
    most = int(list(batch.proto.domain)[-1])
    coefs = np.minimum(caps, most).tolist()
    if all(c >= most for c in coefs):
        return
    model.add(batch <= cp_model.LinearExpr.weighted_sum(pick, coefs))
