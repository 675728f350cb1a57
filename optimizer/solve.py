"""The CP-SAT model of one deployment: a decode candidate with its integer batch and, for
disaggregated serving, the prefill-server candidate that serves its prompts.

Variables: ``pick[i]`` per decode candidate that can serve at batch 1 (the best few overall
and each chip's best: see ``keep_best``; exactly one true), ``batch``, and ``serve[j]`` per
dtype pair's cheapest prefill server (exactly one true).
Each decode constraint family posts ``batch <= sum_i cap[i] * pick[i]`` (its integer-scaled
inequality per candidate, see optimizer.scaling; with exactly one pick the sum is the
picked candidate's cap); constraints.prefill links the two picks (same weight and KV dtypes).

Objective. Cost per query is the decode replica's (Y*price*T_step*G/(3600*B)) plus its
prefill server's (Y*price*T_prefill/3600); queries per dollar is its inverse, a ratio. For a
fixed decode candidate the decode part never increases with the batch (B/(a*B + max(f*B, p))
is nondecreasing), so its best value is the closed form at its largest feasible batch, and
the best prefill server of its dtype pair is fixed too (the model carries only that one per
pair). Candidates are ranked exactly, in floating point, by the objective and the
deterministic tie-break (higher queries per dollar, then lower step time, then fewer chips,
then catalog order; values equal to 12 significant digits tie); the CP-SAT objective is
lexicographic over integers, decode rank then batch, with no rounding of the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

import constraints
from constraints import prefill
from optimizer.candidates import CandidateTable
from optimizer.metrics import measure, prefill_usd_per_query
from optimizer.solve_status import SOLVED, status_name
from optimizer.workload import Workload

#: Largest batch the model represents (keeps the lexicographic objective within int64).
MAX_BATCH = 2**31 - 1


@dataclass(frozen=True)
class Choice:
    row: int  # index into the candidate table (the decode replica)
    batch: int
    prefill_row: int | None = None  # the prefill server's row, for disaggregated serving


def family_caps(table: CandidateTable, workload: Workload) -> dict[str, np.ndarray]:
    """Per decode family, each candidate's largest allowed batch in the integer model."""
    return {f.NAME: f.batch_caps(table, workload) for f in constraints.FAMILIES}


def significant(x: np.ndarray, digits: int = 12) -> np.ndarray:
    """Round to `digits` significant digits, so values equal in exact arithmetic but apart by
    float noise (e.g. two compute-bound replicas of different size) tie, and tie-breaking decides."""
    x = np.asarray(x, dtype=float)
    mag = np.floor(np.log10(np.where(np.isfinite(x) & (x != 0), np.abs(x), 1.0)))
    scale = 10.0 ** (digits - 1 - mag)
    return np.where(np.isfinite(x), np.round(x * scale) / scale, x)


def rank_order(
    table: CandidateTable, rows: np.ndarray, qpd: np.ndarray, step_s: np.ndarray, objective: str
) -> np.ndarray:
    """Positions into `rows`, best first, by the objective and the deterministic tie-break."""
    qpd, step = significant(qpd), significant(step_s)
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


def _weights(order: np.ndarray) -> np.ndarray:
    """Integer objective weights from a best-first order: the best gets the largest."""
    weight = np.empty(len(order), np.int64)
    weight[order] = np.arange(len(order), 0, -1)
    return weight


class ServingModel:
    """The CP-SAT model over a candidate table; solve() may be called with restrictions."""

    def __init__(
        self,
        table: CandidateTable,
        workload: Workload,
        objective: str,
        keep_best: int | None = None,
    ) -> None:
        """keep_best: carry into CP-SAT only the best that many candidates overall and the best
        candidate of each chip type (None: carry every candidate). Exact for the questions
        optimize asks: every carried candidate is feasible on its own at its cap (its dtype
        group's best prefill server included), and the objective ranks the picks
        lexicographically before the batch, so solve() returns the best-ranked candidate its
        restrictions allow. The k-th best plan overall (solve with the k - 1 plans before it
        excluded) is among the best k, and a chip's best plan (solve(chip=...)) is its best
        candidate: with k = the number of plans asked for, nothing that could be chosen is
        dropped. Other exclusions may need candidates that were not carried."""
        self.table = table
        self.caps = family_caps(table, workload)
        cap = np.minimum.reduce(list(self.caps.values())) if len(table) else np.zeros(0, np.int64)
        self.cap = np.minimum(cap, MAX_BATCH)
        groups = table.dtype_groups
        decode_ok = self.cap >= 1

        # Prefill servers, the cheapest per prompt first (then faster, then fewer chips). Only
        # the best of each dtype pair can be part of an optimal plan (the pair's decode
        # replicas pay the same whichever server it is), so the model carries just those;
        # demand mode, where whole servers are counted, uses them all (prefill_rows_all).
        self.prefill_rows_all = np.zeros(0, np.int64)
        self.prefill_rows = np.zeros(0, np.int64)
        prefill_cost = np.zeros(len(table))
        if workload.prefill_servers:
            self.prefill_rows_all = p_all = np.flatnonzero(prefill.server_mask(table, workload))
            p_cost_all = prefill_usd_per_query(table, p_all)
            p_order = np.lexsort(
                (p_all, table.slice_chips[p_all], significant(table.cost.prefill_s[p_all]), significant(p_cost_all))
            )
            # the first of each dtype group in that order: its best server
            codes, first = np.unique(table.group_code[p_all[p_order]], return_index=True)
            best = p_order[first]
            group_best = np.full(int(table.group_code.max(initial=-1)) + 1, -1, np.int64)
            group_best[codes] = best
            best_of_row = group_best[table.group_code]
            served = best_of_row >= 0
            decode_ok &= served
            prefill_cost[served] = p_cost_all[best_of_row[served]]
            self.prefill_rows = np.sort(p_all[best])

        self.feasible_rows = rows = np.flatnonzero(decode_ok)
        best_batch = np.ones(len(rows), np.int64) if objective == "min-latency" else self.cap[rows]
        m = measure(table, rows, best_batch, workload.decode_len)
        total_qpd = 1.0 / (m.usd_per_query + prefill_cost[rows])
        order = rank_order(table, rows, total_qpd, m.step_s, objective)
        weight = _weights(order)
        if keep_best is not None and len(rows):
            # the best keep_best rows overall and the best row of each chip type
            by_rank = np.arange(len(rows)) < keep_best
            by_rank[np.unique(table.chip_code[rows[order]], return_index=True)[1]] = True
            keep = np.empty(len(rows), dtype=bool)
            keep[order] = by_rank
            rows, weight = rows[keep], weight[keep]
        self.rows = rows

        model = cp_model.CpModel()
        self.model = model
        self.pick = [model.new_bool_var(f"pick[{r}]") for r in rows.tolist()]
        model.add_exactly_one(self.pick)
        max_batch = int(self.cap[rows].max()) if len(rows) else 1
        self.batch = model.new_int_var(1, max_batch, "batch")
        for family in constraints.FAMILIES:
            family.add(model, self.pick, self.batch, np.minimum(self.caps[family.NAME][rows], MAX_BATCH))
        self.serve: list[cp_model.IntVar] = []
        if workload.prefill_servers:
            self.serve = [model.new_bool_var(f"serve[{r}]") for r in self.prefill_rows.tolist()]
            model.add_exactly_one(self.serve)
            prefill.add(model, self.pick, groups[rows].tolist(), self.serve, groups[self.prefill_rows].tolist())
        self.chip_used: dict[str, cp_model.IntVar] = {}  # built on the first solve(chip=...)
        batch_sign = -1 if objective == "min-latency" else 1
        objective_expr = (
            cp_model.LinearExpr.weighted_sum(self.pick, (weight * (max_batch + 1)).tolist()) + batch_sign * self.batch
        )
        model.maximize(objective_expr)
        self.solver = cp_model.CpSolver()
        self.solver.parameters.num_workers = 1  # deterministic, and fastest on models this small
        self.solver.parameters.random_seed = 0
        # Exactly-one choices over a few hundred literals: probing and symmetry detection cost
        # more than they save here; the default LP relaxation helps (measured: 24 vs 34
        # zoo scenarios per second on one core with and without these two).
        self.solver.parameters.symmetry_level = 0
        self.solver.parameters.cp_model_probing_level = 0
        self.solves = 0
        self._position = {int(r): k for k, r in enumerate(rows.tolist())}

    def solve(self, *, exclude: tuple[int, ...] = (), chip: str | None = None) -> tuple[str, Choice | None]:
        """Solve, optionally forbidding decode rows `exclude` or restricting to one chip type."""
        m = self.model
        m.clear_assumptions()
        lits = [~self.pick[self._position[r]] for r in exclude if r in self._position]
        if chip is not None:
            members = [p for p, c in zip(self.pick, self.table.chip[self.rows].tolist()) if c == chip]
            if not members:
                return "infeasible", None
            if chip not in self.chip_used:
                used = m.new_bool_var(f"chip_used[{chip}]")
                m.add(sum(members) == used)
                self.chip_used[chip] = used
            lits.append(self.chip_used[chip])
        m.add_assumptions(lits)
        name = status_name(self.solver, self.solver.solve(m))
        self.solves += 1
        if name not in SOLVED:
            return name, None
        k = next(k for k, p in enumerate(self.pick) if self.solver.boolean_value(p))
        prefill_row = None
        if self.serve:
            j = next(j for j, s in enumerate(self.serve) if self.solver.boolean_value(s))
            prefill_row = int(self.prefill_rows[j])
        return name, Choice(row=int(self.rows[k]), batch=int(self.solver.value(self.batch)), prefill_row=prefill_row)
