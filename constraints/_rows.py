"""Shared plumbing of the families: integer caps checked against the float model, and posting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ortools.sat.python import cp_model

from optimizer.scaling import UNBOUNDED


def verified_caps(caps: np.ndarray, satisfied: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Snap integer caps to the float model's boundary.

    Scaling rounds usage up and capacity down, so a cap can fall one short where the float
    inequality holds with equality (round figures make that common). Caps are raised while
    the float check accepts one more sequence and lowered where it rejects the cap, so the
    integer model admits exactly the float model's batches, never one it rejects.
    """
    caps = caps.copy()
    rows = np.arange(len(caps))
    bounded = caps < UNBOUNDED
    for _ in range(8):
        low = bounded & (caps > 0) & ~satisfied(rows, np.maximum(caps, 1))
        high = bounded & ~low & satisfied(rows, caps + 1)
        if not (low.any() or high.any()):
            return caps
        caps[low] -= 1
        caps[high] += 1
    raise AssertionError("integer caps did not settle on the float model's boundary")


def add_caps(model: cp_model.CpModel, pick: Sequence[cp_model.IntVar], batch: cp_model.IntVar,
             caps: np.ndarray) -> None:
    """batch <= cap[i] whenever candidate i is picked (rows the family does not limit skip)."""
    for lit, cap in zip(pick, caps.tolist()):
        if cap < UNBOUNDED:
            model.add(batch <= cap).only_enforce_if(lit)
