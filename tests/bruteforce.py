"""An independent brute-force oracle for the decode optimizer.

It shares only the data files (chips, models) with the library: the formulas of DESIGN.md
section 3 are written out again here, every subset of a slice's axes is tried (no
de-duplication), and every batch is enumerated. Batches are enumerated one by one up to
EXHAUSTIVE; a candidate still feasible there is extended by doubling and bisection on the
feasibility of the batch (each constraint only tightens as the batch grows).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

BYTES = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
EXHAUSTIVE = 4096


@dataclass
class Best:
    value: float  # the objective's value (queries per dollar; chips; step seconds)
    qpd: float
    chip: str
    topology: str
    tp: int
    n_axes: int
    weights: str
    kv: str
    batch: int


def _terms(model, chip, y, n, w, kv, context):
    heads = model.num_heads + model.num_kv_heads
    P = (model.num_layers * model.d_model * (3 * model.d_ff + 2 * model.head_dim * heads)
         + (1 if model.tie_embeddings else 2) * model.d_model * model.vocab)
    kv_tok = 2 * model.num_kv_heads * model.head_dim * model.num_layers * BYTES[kv]
    w_ici = chip.link_bytes_per_s * chip.links_per_axis
    return dict(P=P, bw=BYTES[w], kv_seq=kv_tok * context, Y=y, n=n, M=chip.hbm_bytes,
                W=chip.hbm_bytes_per_s, C=chip.bf16_flops, Wici=w_ici, D=model.d_model, F=model.d_ff)


def _feasible(t, B, slo_s):
    B = np.asarray(B, dtype=float)
    fits = t["P"] * t["bw"] + B * t["kv_seq"] <= t["Y"] * t["M"]
    step = _step(t, B)
    fast = step <= slo_s
    if t["Y"] > 1:
        t_ici = B * t["D"] * 2 / (t["n"] * t["Wici"])
        t_hbm = t["D"] * t["F"] * t["bw"] / (t["Y"] * t["W"])
        t_math = 2 * B * t["D"] * t["F"] / (t["Y"] * t["C"])
        comms_ok = ~(t_ici > np.maximum(t_hbm, t_math))
    else:
        comms_ok = np.ones_like(B, dtype=bool)
    return fits & fast & comms_ok


def _step(t, B):
    B = np.asarray(B, dtype=float)
    t_kv = B * t["kv_seq"] / (t["Y"] * t["W"])
    t_params = t["P"] * t["bw"] / (t["Y"] * t["W"])
    t_flops = 2 * t["P"] * B / (t["Y"] * t["C"])
    return t_kv + np.maximum(t_flops, t_params)


def feasible_batches(t, slo_s) -> np.ndarray:
    """Every feasible batch (as an array), enumerated; see the module docstring."""
    B = np.arange(1, EXHAUSTIVE + 1)
    ok = _feasible(t, B, slo_s)
    feas = B[ok]
    if ok[-1]:
        lo, hi = EXHAUSTIVE, EXHAUSTIVE * 2
        while _feasible(t, hi, slo_s):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _feasible(t, mid, slo_s) else (lo, mid)
        feas = np.concatenate([feas, np.array([lo])])  # the only candidate beyond: its largest batch
    return feas


def brute_force(model, chips: dict, chip_names, slo_ms, context, decode_len, weights=None, kv=None,
                objective="queries-per-dollar") -> Best | None:
    slo_s = slo_ms / 1e3
    best: Best | None = None
    for name in chip_names:
        chip = chips[name]
        ws = weights or [d for d in ("bf16", chip.eight_bit, "int4") if d in chip.weight_dtypes]
        ks = kv or [d for d in ("bf16", chip.eight_bit, "int4") if d in chip.kv_dtypes]
        for shape in chip.topologies:
            dims = [int(d) for d in shape.split("x")]
            chips_in_slice = math.prod(dims)
            for r in range(len(dims) + 1):
                for axes in itertools.combinations(range(len(dims)), r):
                    y = math.prod(dims[a] for a in axes)
                    n = sum(1 for a in axes if dims[a] > 1)
                    for w in ws:
                        if w not in chip.weight_dtypes:
                            continue
                        for k in ks:
                            if k not in chip.kv_dtypes:
                                continue
                            t = _terms(model, chip, y, n, w, k, context)
                            feas = feasible_batches(t, slo_s)
                            if len(feas) == 0:
                                continue
                            step = _step(t, feas)
                            qpd = 3600 * feas / (step * decode_len * y * chip.usd_per_chip_hour)
                            if objective == "queries-per-dollar":
                                j = int(np.argmax(qpd))
                                value = float(qpd[j])
                                better = best is None or value > best.value
                            elif objective == "min-chips":
                                j = int(np.argmax(qpd))
                                value = float(chips_in_slice)
                                better = best is None or value < best.value or (
                                    value == best.value and qpd[j] > best.qpd)
                            else:  # min-latency
                                j = int(np.argmin(step))
                                value = float(step[j])
                                better = best is None or value < best.value
                            if better:
                                best = Best(value, float(qpd[j]), name, shape, y, n, w, k, int(feas[j]))
    return best
