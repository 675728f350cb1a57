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

Past one node (optimizer.multinode) each collective is checked on the link it crosses: a
pipeline stage's tensor parallelism inside its node over NVLink, on its microbatch of B/pp
sequences (the stage boundaries are in the step, not here); wide expert parallelism's
all-to-all over the slower of its NVLink and scale-out legs.
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
    b = c.effective_batch(batch, rows)
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
    if int(table.nodes[row]) > 1:
        return _explain_nodes(table, row, batch)
    return (
        f"batch {batch} is capped by the interconnect: with {table.tp[row]}-way model parallelism "
        f"over {n} {'axis' if n == 1 else 'axes'}, moving activations takes longer than loading "
        f"weights above {batch} sequence{'s' if batch != 1 else ''}"
    )


def _explain_nodes(table: CandidateTable, row: int, batch: int) -> str:
    """The binding link of a multi-node replica: NVLink inside a pipeline stage, or the slower
    leg of the experts' all-to-all across the nodes (docs/cost-model.md)."""
    y, pp, nodes, e = (int(x[row]) for x in (table.tp, table.pp, table.nodes, table.ep))
    up, out = float(table.scale_up_bytes_per_s[row]), float(table.scale_out_bytes_per_s[row])
    sequences = f"{batch} sequence{'s' if batch != 1 else ''}"
    if pp > 1:
        return (
            f"batch {batch} is capped by the interconnect inside each node: each of the {pp} pipeline stages is "
            f"{y // pp}-way model parallel over NVLink ({up / 1e9:,.0f} GB/s per chip), and on its microbatch "
            f"moving activations takes longer than loading weights above {sequences}"
        )
    local = e // nodes
    if (e - local) / out >= (local - 1) / up:
        others = f"{nodes - 1} node{'s' if nodes > 2 else ''}"
        link = f"its scale-out leg to the other {others} ({out / 1e9:,.0f} GB/s per chip)"
    else:
        link = f"its NVLink leg inside each node ({up / 1e9:,.0f} GB/s per chip)"
    return (
        f"batch {batch} is capped by the interconnect across nodes: the experts' all-to-all over {e} chips in "
        f"{nodes} nodes is slowest on {link}, and outlasts the MoE layer's own work above {sequences}"
    )
