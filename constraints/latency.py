"""Decode-step latency target: every output token within the SLO.

    T_step = B*(T_kv1 + T_col1) + max(B*T_flops1, T_params) <= SLO

(T_col1 = T_prefill/G when prefill is co-located on the replica, else 0.) The max splits
into two rows that must both hold:
    B*(T_kv1 + T_col1 + T_flops1) <= SLO        and        B*(T_kv1 + T_col1) <= SLO - T_params
Under the calibrated profile the step is T_fixed + B*out + max(B*T_flops1, T_params + B*kv_in)
(engine overheads and collectives outside the max, the KV read inside it), which splits the
same way: B*(out + T_flops1) <= SLO - T_fixed and B*(out + kv_in) <= SLO - T_fixed - T_params.
Scaled to femtoseconds, per-sequence times rounded up and the SLO down. A mixture-of-experts
model also reads the experts its batch touches inside the max, E*(1-(1-k/E)^B) per layer, which
is not linear in B: its rows start from the cap without that term and verified_caps moves
each to the float check's boundary (the step only grows with B). A pipeline over several nodes
(optimizer.multinode) adds its stage boundaries to T_fixed and the per-sequence slope, and
costs below B = pp sequences what pp cost (the bubble): verified_caps moves those caps too.
"""

from __future__ import annotations

import numpy as np

from constraints._rows import add_caps, verified_caps
from optimizer.candidates import CandidateTable
from optimizer.scaling import TIME_UNITS_PER_S, UNBOUNDED, batch_cap, capacity_int, usage_int
from optimizer.workload import Workload

NAME = "latency"
add = add_caps


def satisfied(table: CandidateTable, rows: np.ndarray, batch: np.ndarray, workload: Workload) -> np.ndarray:
    return table.cost.step_s(batch, rows) <= workload.slo_s


def batch_caps(table: CandidateTable, workload: Workload) -> np.ndarray:
    if workload.slo_ms is None:
        return np.full(len(table), UNBOUNDED, dtype=np.int64)
    c = table.cost
    slo = capacity_int(np.full(len(table), workload.slo_s), TIME_UNITS_PER_S) - usage_int(c.fixed_s, TIME_UNITS_PER_S)
    outside, kv_in = c.slopes()
    compute_row = batch_cap(usage_int(outside + c.flops_s_per_seq, TIME_UNITS_PER_S), slo)
    params_row = batch_cap(usage_int(outside + kv_in, TIME_UNITS_PER_S), slo - usage_int(c.params_s, TIME_UNITS_PER_S))
    caps = np.minimum(compute_row, params_row)
    floor = None
    if c.experts_s.any():
        # the experts a batch touches cost at most all of them, and at most k/E of them per
        # sequence: either bound makes the step linear again, and its cap a batch that fits
        touched = c.experts_s * (1.0 - c.expert_miss)
        all_row = batch_cap(
            usage_int(outside + kv_in, TIME_UNITS_PER_S), slo - usage_int(c.params_s + c.experts_s, TIME_UNITS_PER_S)
        )
        each_row = batch_cap(
            usage_int(outside + kv_in + touched, TIME_UNITS_PER_S), slo - usage_int(c.params_s, TIME_UNITS_PER_S)
        )
        floor = np.minimum(compute_row, np.maximum(all_row, each_row))
    return verified_caps(caps, lambda r, b: satisfied(table, r, b, workload), floor)


def explain(table: CandidateTable, row: int, batch: int, workload: Workload) -> str:
    c = table.cost
    step_next = float(c.step_s(batch + 1, np.array([row]))[0])
    text = (
        f"batch {batch} is capped by the latency target: one more sequence would make the "
        f"decode step {step_next * 1e3:.2f} ms, over the {workload.slo_ms:g} ms target"
    )
    pp = int(table.pp[row])
    if pp > 1:
        b = float(c.effective_batch(batch + 1, np.array([row]))[0])
        boundaries = float(c.boundary_s[row] + c.boundary_s_per_seq[row] * b)
        text += (
            f" (of which {boundaries * 1e3:.3f} ms crossing the boundaries of its {pp} pipeline stages over the "
            f"scale-out network, {table.scale_out_bytes_per_s[row] / 1e9:,.0f} GB/s per chip)"
        )
    return text
