"""Shared plumbing of the families: integer caps checked against the float model, and posting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ortools.sat.python import cp_model

from optimizer.scaling import UNBOUNDED


def verified_caps(caps: np.ndarray, satisfied: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Lower any integer cap the float model rejects (a rounding tie), so that the integer
    model never admits a batch the float model refuses."""
    caps = caps.copy()
    rows = np.arange(len(caps))
    for _ in range(4):
        bounded = (caps > 0) & (caps < UNBOUNDED)
        bad = bounded & ~satisfied(rows, np.where(bounded, caps, 1))
        if not bad.any():
            return caps
        caps[bad] -= 1
    return caps


def add_caps(model: cp_model.CpModel, pick: Sequence[cp_model.IntVar], batch: cp_model.IntVar,
             caps: np.ndarray) -> None:
    """batch <= cap[i] whenever candidate i is picked (rows the family does not limit skip)."""
    for lit, cap in zip(pick, caps.tolist()):
        if cap < UNBOUNDED:
            model.add(batch <= cap).only_enforce_if(lit)
