"""The CP-SAT model of one decode deployment: pick one candidate and its integer batch.

Variables: ``pick[i]`` (one per candidate that can serve at batch 1; exactly one is true)
and ``batch``. Each constraint family posts ``batch <= cap`` rows enforced by ``pick[i]``
(its integer-scaled inequality, see optimizer.scaling).

Objective. Queries per dollar, 3600*B / (T_step(B)*G*Y*price), is a ratio, so it is not
posted as a scaled float. For a fixed candidate it never decreases with the batch
(B / (a*B + max(f*B, p)) is nondecreasing), so each candidate's best value is the closed
form at its largest feasible batch. Candidates are ranked exactly, in floating point, by
the objective and the deterministic tie-break (higher queries per dollar, then lower step
time, then fewer chips, then catalog order; values equal to 12 significant digits tie); the CP-SAT objective is
``sum(rank_weight[i] * pick[i]) * (max_batch + 1) +/- batch``, an integer objective that
orders plans exactly as the float model does, with no rounding of the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

import constraints
from optimizer.candidates import CandidateTable
from optimizer.metrics import measure
from optimizer.workload import Workload

STATUS_NAMES = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible",
                cp_model.INFEASIBLE: "infeasible", cp_model.MODEL_INVALID: "model_invalid",
                cp_model.UNKNOWN: "unknown"}


@dataclass(frozen=True)
class Choice:
    row: int  # index into the candidate table
    batch: int


def family_caps(table: CandidateTable, workload: Workload) -> dict[str, np.ndarray]:
    """Per family, each candidate's largest allowed batch in the integer model."""
    return {f.NAME: f.batch_caps(table, workload) for f in constraints.FAMILIES}


def significant(x: np.ndarray, digits: int = 12) -> np.ndarray:
    """Round to `digits` significant digits, so values equal in exact arithmetic but apart by
    float noise (e.g. two compute-bound replicas of different size) tie, and tie-breaking decides."""
    x = np.asarray(x, dtype=float)
    mag = np.floor(np.log10(np.where(np.isfinite(x) & (x != 0), np.abs(x), 1.0)))
    scale = 10.0 ** (digits - 1 - mag)
    return np.where(np.isfinite(x), np.round(x * scale) / scale, x)


def rank_order(table: CandidateTable, rows: np.ndarray, batch: np.ndarray, objective: str,
               decode_len: int) -> np.ndarray:
    """Positions into `rows`, best first, by the objective and the deterministic tie-break."""
    m = measure(table, rows, batch, decode_len)
    qpd, step = significant(m.queries_per_dollar), significant(m.step_s)
    chips = table.slice_chips[rows]
    if objective == "queries-per-dollar":
        keys = (rows, chips, step, -qpd)
    elif objective == "min-chips":
        keys = (rows, step, -qpd, chips)
    elif objective == "min-latency":
        keys = (rows, chips, -qpd, step)
    else:
        raise ValueError(f"unknown objective {objective!r}")
    return np.lexsort(keys)


class DecodeModel:
    """The CP-SAT model over a candidate table; solve() may be called with restrictions."""

    def __init__(self, table: CandidateTable, workload: Workload, objective: str,
                 caps: dict[str, np.ndarray] | None = None) -> None:
        self.table = table
        self.workload = workload
        self.objective = objective
        self.caps = caps if caps is not None else family_caps(table, workload)
        cap = np.minimum.reduce(list(self.caps.values())) if len(table) else np.zeros(0, np.int64)
        self.cap = cap
        self.rows = np.flatnonzero(cap >= 1)
        rows = self.rows
        best_batch = np.ones(len(rows), np.int64) if objective == "min-latency" else cap[rows]
        order = rank_order(table, rows, best_batch, objective, workload.decode_len)
        weight = np.empty(len(rows), np.int64)
        weight[order] = np.arange(len(rows), 0, -1)

        m = cp_model.CpModel()
        self.model = m
        self.pick = [m.new_bool_var(f"pick[{r}]") for r in rows.tolist()]
        m.add_exactly_one(self.pick)
        max_batch = int(cap[rows].max()) if len(rows) else 1
        self.batch = m.new_int_var(1, max_batch, "batch")
        for family in constraints.FAMILIES:
            family.add(m, self.pick, self.batch, self.caps[family.NAME][rows])
        self.chip_used: dict[str, cp_model.IntVar] = {}
        for chip in sorted(set(table.chip[rows].tolist())):
            used = m.new_bool_var(f"chip_used[{chip}]")
            members = [p for p, c in zip(self.pick, table.chip[rows].tolist()) if c == chip]
            m.add(sum(members) == used)
            self.chip_used[chip] = used
        batch_sign = -1 if objective == "min-latency" else 1
        m.maximize(sum(int(w) * p for w, p in zip(weight.tolist(), self.pick)) * (max_batch + 1)
                   + batch_sign * self.batch)
        self.solver = cp_model.CpSolver()
        self.solver.parameters.num_workers = 1  # deterministic, and fastest on models this small
        self.solver.parameters.random_seed = 0
        # The model is an exactly-one over a few hundred literals: probing, symmetry detection
        # and LP relaxation cost more than they save here (measured in benchmarks/).
        self.solver.parameters.symmetry_level = 0
        self.solver.parameters.cp_model_probing_level = 0
        self.solver.parameters.linearization_level = 0
        self.solves = 0
        self._position = {int(r): k for k, r in enumerate(rows.tolist())}

    def solve(self, *, exclude: tuple[int, ...] = (), chip: str | None = None) -> tuple[str, Choice | None]:
        """Solve, optionally forbidding table rows `exclude` or restricting to one chip type."""
        m = self.model
        m.clear_assumptions()
        lits = [~self.pick[self._position[r]] for r in exclude if r in self._position]
        if chip is not None:
            if chip not in self.chip_used:
                return "infeasible", None
            lits.append(self.chip_used[chip])
        m.add_assumptions(lits)
        status = self.solver.solve(m)
        self.solves += 1
        name = STATUS_NAMES.get(status, "unknown")
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return name, None
        k = next(k for k, p in enumerate(self.pick) if self.solver.boolean_value(p))
        return name, Choice(row=int(self.rows[k]), batch=int(self.solver.value(self.batch)))
