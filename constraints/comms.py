"""Comms-bound: a sharded matmul's collectives must not take longer than its own work.

    T_ici = B*D*b_act/(n_axes*W_ici)  <=  max(T_hbm = D*F*b_w/(Y*W_hbm), T_math = 2*B*D*F/(Y*C))

Y = 1 has no collectives. A mixture-of-experts layer checks its collectives (the attention
group's all-reduce, the experts' all-reduce under expert tensor parallelism, the all-to-all
dispatch and combine under expert parallelism: docs/models.md) against the layer's work,
whose weight reads grow with the experts the batch touches (not linear in B: the integer
cap is moved to the float check's boundary). Both sides grow with B, so where T_ici grows faster than T_math
the inequality reduces to T_ici <= T_hbm, an upper bound on the batch; elsewhere it always
holds. Scaled to femtoseconds, T_ici rounded up and T_hbm down. With co-located prefill the
replica also runs the prompt's matmuls over its T tokens, so it must not be comms-bound at
B = T either (the same check prefill servers pass; see constraints.prefill).
"""

from __future__ import annotations

import numpy as np

from constraints._rows import add_caps, verified_caps
from optimizer.candidates import CandidateTable
from optimizer.scaling import TIME_UNITS_PER_S, UNBOUNDED, batch_cap, capacity_int, usage_int
from optimizer.workload import Workload

NAME = "comms"
add = add_caps


def comms_bound(table: CandidateTable, rows: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """True where the replica's collectives outlast its matmul (docs/cost-model.md)."""
    c = table.cost
    b = np.asarray(batch, dtype=float)
    t_ici = c.ici_s_per_seq[rows] * b
    expert_share = 1.0 - c.expert_miss[rows] ** b  # of a MoE layer's experts, the ones B tokens touch
    t_work = np.maximum(
        c.matmul_hbm_s[rows] + c.matmul_experts_s[rows] * expert_share, c.matmul_flops_s_per_seq[rows] * b
    )
    return (table.tp[rows] > 1) & (t_ici > t_work)


def prompt_ok(table: CandidateTable, rows: np.ndarray, workload: Workload) -> np.ndarray:
    """Co-located serving: the replica is not comms-bound on the prompt's tokens."""
    if not workload.colocated:
        return np.ones(len(rows), dtype=bool)
    return ~comms_bound(table, rows, np.full(len(rows), workload.prompt_tokens))


def satisfied(table: CandidateTable, rows: np.ndarray, batch: np.ndarray, workload: Workload) -> np.ndarray:
    return ~comms_bound(table, rows, batch) & prompt_ok(table, rows, workload)


def batch_caps(table: CandidateTable, workload: Workload) -> np.ndarray:
    c = table.cost
    limited = (table.tp > 1) & (c.ici_s_per_seq > c.matmul_flops_s_per_seq)
    coef = usage_int(c.ici_s_per_seq, TIME_UNITS_PER_S)
    # with every expert touched (an upper bound on a MoE layer's reads); verified_caps then
    # moves the cap to the exact boundary of the float check
    rhs = capacity_int(c.matmul_hbm_s + c.matmul_experts_s, TIME_UNITS_PER_S)
    caps = np.where(limited, batch_cap(coef, rhs), UNBOUNDED)
    caps = np.where(prompt_ok(table, np.arange(len(table)), workload), caps, 0)
    return verified_caps(caps, lambda r, b: satisfied(table, r, b, workload))


def explain(table: CandidateTable, row: int, batch: int, workload: Workload) -> str:
    n = int(table.n_axes[row])
    return (
        f"batch {batch} is capped by the interconnect: with {table.tp[row]}-way model parallelism "
        f"over {n} {'axis' if n == 1 else 'axes'}, moving activations takes longer than loading "
        f"weights above {batch} sequence{'s' if batch != 1 else ''}"
    )
