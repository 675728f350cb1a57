"""An independent brute-force oracle for the decode optimizer.

It shares only the data files (chips, models) with the library: the formulas of docs/cost-model.md
are written out again here, every subset of a slice's axes is tried (no
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


def _params(model):
    heads = model.num_heads + model.num_kv_heads
    return (
        model.num_layers * model.d_model * (3 * model.d_ff + 2 * model.head_dim * heads)
        + (1 if model.tie_embeddings else 2) * model.d_model * model.vocab
    )


def calibrated_params(path, engine=None):
    """The calibrated profile's parameters for one engine, read straight from the TOML file:
    per chip (efficiencies, the reference chip's where a chip has none) and the engine's set."""
    import tomllib

    with open(path, "rb") as f:
        data = tomllib.load(f)
    engine = engine or data["default_engine"]
    return dict(
        alpha=data["collective_latency_s"],
        mem=data["kv_memory_fraction"],
        chips=data["chips"],
        engines={k: v for k, v in data["engines"].items() if k.split("@")[0] == engine},
        engine=engine,
    )


def _calibrated(cal, model, chip, y, n, w, context, prompt_len, kv_tok):
    """The calibrated step's pieces for one replica, from the formulas of the profile."""
    eff = cal["chips"].get(chip.name, cal["chips"]["h100"])
    sets = cal["engines"]
    eng = sets.get(f"{cal['engine']}@{chip.name}") or sets.get(f"{cal['engine']}@h100") or sets[sorted(sets)[0]]
    L, D, H, hd, V = model.num_layers, model.d_model, model.num_heads, model.head_dim, model.vocab
    P = _params(model)
    p_lin = P - (0 if model.tie_embeddings else 1) * D * V
    p_body = P - (1 if model.tie_embeddings else 2) * D * V
    peak = {"fp8": chip.fp8_flops, "int8": chip.int8_flops}.get(w) or chip.bf16_flops
    bw = y * chip.hbm_bytes_per_s * eff["hbm_efficiency"]
    fl = y * peak * eff["flops_efficiency"]
    link = chip.link_bytes_per_s if chip.kind == "gpu" else chip.link_bytes_per_s * chip.links_per_axis * max(n, 1)
    comm_tok = 2 * L * 2 * D * (2 * (y - 1) / y) / (link * eng["link_efficiency"])
    return dict(
        t0=eng["step_overhead_s"] + 2 * L * cal["alpha"] * math.log2(y),
        per_seq=eng["seq_overhead_s"] + comm_tok,
        weights=p_lin * BYTES[w] / bw,
        kv=context * kv_tok / bw,
        dec=(2 * p_lin + 4 * L * H * hd * context) / fl,
        prefill=prompt_len * ((2 * p_body + 2 * L * H * hd * prompt_len) / fl + comm_tok),
        mem=cal["mem"],
    )


def _terms(model, chip, y, n, w, kv, context, prompt_len=1, mfu=0.4, colocated=False, decode_len=1, cal=None):
    P = _params(model)
    kv_tok = 2 * model.num_kv_heads * model.head_dim * model.num_layers * BYTES[kv]
    w_ici = chip.link_bytes_per_s * chip.links_per_axis
    prefill = 2 * P * prompt_len / (y * chip.bf16_flops * mfu)
    c = _calibrated(cal, model, chip, y, n, w, context, prompt_len, kv_tok) if cal else None
    if c:
        prefill = c["prefill"]
    return dict(
        P=P,
        bw=BYTES[w],
        kv_seq=kv_tok * context,
        Y=y,
        n=n,
        M=chip.hbm_bytes * (c["mem"] if c else 1.0),
        W=chip.hbm_bytes_per_s,
        C=chip.bf16_flops,
        Wici=w_ici,
        D=model.d_model,
        F=model.d_ff,
        prefill=prefill,
        prompt_kv=kv_tok * prompt_len,
        T=prompt_len,
        col=prefill / decode_len if colocated else 0.0,
        cal=c,
    )


def _comms_ok(t, B):
    B = np.asarray(B, dtype=float)
    if t["Y"] > 1:
        t_ici = B * t["D"] * 2 / (t["n"] * t["Wici"])
        t_hbm = t["D"] * t["F"] * t["bw"] / (t["Y"] * t["W"])
        t_math = 2 * B * t["D"] * t["F"] / (t["Y"] * t["C"])
        return ~(t_ici > np.maximum(t_hbm, t_math))
    return np.ones_like(B, dtype=bool)


def _feasible(t, B, slo_s, ttft_s=np.inf):
    B = np.asarray(B, dtype=float)
    fits = t["P"] * t["bw"] + B * t["kv_seq"] <= t["Y"] * t["M"]
    fast = _step(t, B) <= slo_s
    first_token = (t["prefill"] <= ttft_s and bool(_comms_ok(t, t["T"]))) if t["col"] > 0 else True
    return fits & fast & _comms_ok(t, B) & first_token


def _step(t, B):
    B = np.asarray(B, dtype=float)
    c = t["cal"]
    if c:
        return c["t0"] + B * (c["per_seq"] + t["col"]) + np.maximum(c["weights"] + B * c["kv"], B * c["dec"])
    t_kv = B * t["kv_seq"] / (t["Y"] * t["W"])
    t_params = t["P"] * t["bw"] / (t["Y"] * t["W"])
    t_flops = 2 * t["P"] * B / (t["Y"] * t["C"])
    return t_kv + B * t["col"] + np.maximum(t_flops, t_params)


def feasible_batches(t, slo_s, ttft_s=np.inf) -> np.ndarray:
    """Every feasible batch (as an array), enumerated; see the module docstring."""
    B = np.arange(1, EXHAUSTIVE + 1)
    ok = _feasible(t, B, slo_s, ttft_s)
    feas = B[ok]
    if ok[-1]:
        lo, hi = EXHAUSTIVE, EXHAUSTIVE * 2
        while _feasible(t, hi, slo_s, ttft_s):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _feasible(t, mid, slo_s, ttft_s) else (lo, mid)
        feas = np.concatenate([feas, np.array([lo])])  # the only candidate beyond: its largest batch
    return feas


def _layouts(chip):
    """(slice chips, Y, n_axes) of every subset of every slice's axes (GPUs: any Y dividing the node)."""
    for shape in chip.topologies:
        dims = [int(d) for d in shape.split("x")]
        chips_in_slice = math.prod(dims)
        if chip.kind == "gpu":
            for y in range(1, chips_in_slice + 1):
                if chips_in_slice % y == 0:
                    yield shape, chips_in_slice, y, 1 if y > 1 else 0
            continue
        for r in range(len(dims) + 1):
            for axes in itertools.combinations(range(len(dims)), r):
                y = math.prod(dims[a] for a in axes)
                yield shape, chips_in_slice, y, sum(1 for a in axes if dims[a] > 1)


def _dtypes(chip, asked, options):
    return [d for d in (asked or ("bf16", chip.eight_bit, "int4")) if d in options]


def cheapest_prefill(model, chips, chip_names, context, prompt_len, mfu, ttft_s, cal=None):
    """Per (weights, kv) dtype pair, the lowest prefill cost per prompt of any server that holds
    the weights and one prompt's KV, is not comms-bound on the prompt, and meets the TTFT."""
    best: dict[tuple[str, str], float] = {}
    for name in chip_names:
        chip = chips[name]
        for _, _, y, n in _layouts(chip):
            for w in chip.weight_dtypes:
                for k in chip.kv_dtypes:
                    t = _terms(model, chip, y, n, w, k, context, prompt_len, mfu, cal=cal)
                    if t["P"] * t["bw"] + t["prompt_kv"] > y * t["M"] or t["prefill"] > ttft_s:
                        continue
                    if not _comms_ok(t, prompt_len):
                        continue
                    usd = y * chip.usd_per_chip_hour * t["prefill"] / 3600
                    best[(w, k)] = min(best.get((w, k), math.inf), usd)
    return best


def brute_force(
    model,
    chips: dict,
    chip_names,
    slo_ms,
    context,
    decode_len,
    weights=None,
    kv=None,
    objective="queries-per-dollar",
    serving="decode-only",
    prompt_len=None,
    mfu=0.4,
    ttft_ms=None,
    cal=None,
) -> Best | None:
    slo_s = slo_ms / 1e3
    ttft_s = np.inf if ttft_ms is None else ttft_ms / 1e3
    T = prompt_len if prompt_len is not None else max(context - decode_len, 1)
    prefill_usd = (
        cheapest_prefill(model, chips, chip_names, context, T, mfu, ttft_s, cal) if serving == "disaggregated" else None
    )
    best: Best | None = None
    for name in chip_names:
        chip = chips[name]
        for shape, chips_in_slice, y, n in _layouts(chip):
            for w in _dtypes(chip, weights, chip.weight_dtypes):
                for k in _dtypes(chip, kv, chip.kv_dtypes):
                    extra = 0.0
                    if prefill_usd is not None:
                        if (w, k) not in prefill_usd:
                            continue
                        extra = prefill_usd[(w, k)]
                    t = _terms(model, chip, y, n, w, k, context, T, mfu, serving == "colocated", decode_len, cal)
                    feas = feasible_batches(t, slo_s, ttft_s)
                    if len(feas) == 0:
                        continue
                    step = _step(t, feas)
                    decode_usd = step * decode_len * y * chip.usd_per_chip_hour / (3600 * feas)
                    qpd = 1.0 / (decode_usd + extra)
                    if objective == "queries-per-dollar":
                        j = int(np.argmax(qpd))
                        value = float(qpd[j])
                        better = best is None or value > best.value
                    elif objective == "min-chips":
                        j = int(np.argmax(qpd))
                        value = float(chips_in_slice)
                        better = best is None or value < best.value or (value == best.value and qpd[j] > best.qpd)
                    else:  # min-latency
                        j = int(np.argmin(step))
                        value = float(step[j])
                        better = best is None or value < best.value
                    if better:
                        best = Best(value, float(qpd[j]), name, shape, y, n, w, k, int(feas[j]))
    return best
