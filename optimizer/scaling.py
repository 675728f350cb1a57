"""Integer scaling for CP-SAT, in one place.

Every constraint family turns its float inequality into rows `coef * batch <= rhs` with
integer coefficients: usage is rounded up and capacity down, so an integer plan is always
a float plan (the families' solver-free checkers re-verify this). Because each row has a
single integer variable, it is exactly `batch <= floor(rhs/coef)`: that cap is what the
family posts (as `batch <= sum_i cap[i] * pick[i]`), which keeps CP-SAT's coefficients
small however large the slice or the context.
"""

from __future__ import annotations

import math

import numpy as np

#: Time unit of the integer model: femtoseconds (a decode step of 10 ms is 1e13 units).
TIME_UNITS_PER_S = 10**15
#: Byte unit of the integer model: half-bytes, so int4 weights and caches are exact.
BYTE_UNITS_PER_BYTE = 2
#: Largest capacity kept (int64 with headroom); capacities above it are clipped down.
INT_LIMIT = 2**62
#: A batch cap meaning "this family does not limit the batch of this row".
UNBOUNDED = 2**40
#: Money unit of the integer models: micro-dollars (per hour in demand mode, per chip-period
#: in plans).
USD_UNITS = 10**6
#: Rate unit of the integer models: micro-queries (or micro-prompts) per second.
RATE_UNITS_PER_QPS = 10**6


def usage_int(value: np.ndarray, units: int) -> np.ndarray:
    """A usage in integer units, rounded up (clipped to INT_LIMIT: a usage that large never fits)."""
    scaled = np.ceil(np.minimum(np.asarray(value, dtype=float) * units, float(INT_LIMIT)))
    return scaled.astype(np.int64)


def capacity_int(value: np.ndarray, units: int) -> np.ndarray:
    """A capacity in integer units, rounded down (clipped to INT_LIMIT, never up)."""
    scaled = np.floor(np.minimum(np.asarray(value, dtype=float) * units, float(INT_LIMIT)))
    return scaled.astype(np.int64)


def batch_cap(coef: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Largest integer batch with coef*batch <= rhs (0 if none; UNBOUNDED if coef is 0)."""
    coef = np.asarray(coef, dtype=np.int64)
    rhs = np.asarray(rhs, dtype=np.int64)
    safe = np.where(coef > 0, coef, 1)
    cap = np.where(rhs >= 0, rhs // safe, 0)
    cap = np.where(coef > 0, cap, np.where(rhs >= 0, UNBOUNDED, 0))
    return np.minimum(cap, UNBOUNDED).astype(np.int64)


def usd_int(usd: float) -> int:
    """A price in micro-dollars, to the nearest one (prices are data, not bounds)."""
    return round(usd * USD_UNITS)


def usd_limit_int(usd: float) -> int:
    """A money limit (a budget) in micro-dollars, rounded down: within it is within the limit."""
    return math.floor(usd * USD_UNITS)


def rate_int(qps: float) -> int:
    """A rate a slice serves (queries or prompts per second) in integer units, rounded down: a capacity."""
    return math.floor(qps * RATE_UNITS_PER_QPS)


def demand_int(qps: float) -> int:
    """A demand in integer units, rounded up: covering it covers the demand."""
    return math.ceil(qps * RATE_UNITS_PER_QPS)


def objective_bound_int(bound: float) -> int:
    """CP-SAT's best bound on an integer objective, as an integer (it reports a float)."""
    return math.ceil(bound - 1e-9)
