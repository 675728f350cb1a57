"""An independent brute-force oracle for the decode optimizer.

It shares only the data files (chips, models) with the library: the formulas of docs/cost-model.md
are written out again here, every subset of a slice's axes is tried (no
de-duplication), and every batch is enumerated. Batches are enumerated one by one up to
EXHAUSTIVE; a candidate still feasible there is extended by doubling and bisection on the
feasibility of the batch (each constraint only tightens as the batch grows).

Replicas over several GPU nodes (docs/cost-model.md, "Several nodes") are written out again
too, in another form than the library's: a pipeline of pp stages is a replica of one stage's
chips holding the whole model, stepped at the microbatch B/pp, plus its stage boundaries.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

BYTES = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5}
EXHAUSTIVE = 4096
HOP_S = 10e-6  # one transfer between nodes (docs/cost-model.md)
MAX_NODES = 4  # the search's default: replicas of 2 and 4 nodes


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
    pp: int = 1
    nodes: int = 1


def _params(model):
    heads = model.num_heads + model.num_kv_heads
    return (
        model.num_layers * model.d_model * (3 * model.d_ff + 2 * model.head_dim * heads)
        + (1 if model.tie_embeddings else 2) * model.d_model * model.vocab
    )


def _attention_params(m):
    """One attention layer's weights, written out again (grouped-query or latent)."""
    D, N = m.d_model, m.num_heads
    if not m.kv_lora_rank:
        return (
            D * N * m.head_dim * (2 if m.attention_output_gate else 1)
            + 2 * D * m.num_kv_heads * m.head_dim
            + N * m.head_dim * D
        )
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    q = (D * m.q_lora_rank + m.q_lora_rank * N * qk) if m.q_lora_rank else D * N * qk
    kv = D * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank * N * (m.qk_nope_head_dim + m.v_head_dim)
    idx = 0
    if m.index_topk:
        idx = (m.q_lora_rank or D) * m.index_heads * m.index_head_dim + D * m.index_head_dim + D * m.index_heads
    return q + kv + N * m.v_head_dim * D + idx


def _moe(model):
    """(P_d, P_r, flop params, per-MoE-layer dense weights, one expert's weights) of any model."""
    m = model
    D, g = m.d_model, m.mlp_matrices
    attn_layers = (m.num_layers if m.full_attention_layers is None else m.full_attention_layers) + m.sliding_layers
    dense_mlp = m.dense_mlp_layers if m.dense_mlp_layers is not None else m.num_layers - m.moe_layers
    expert = g * D * m.expert_d_ff
    per_moe_layer = g * D * m.shared_d_ff + D * m.num_experts
    p_d = (
        attn_layers * _attention_params(m)
        + m.linear_layers * m.linear_params_per_layer
        + dense_mlp * g * D * m.d_ff
        + m.moe_layers * per_moe_layer
        + (1 if m.tie_embeddings else 2) * D * m.vocab
    )
    p_r = m.moe_layers * m.num_experts * expert
    return p_d, p_r, p_d + m.moe_layers * m.experts_per_token * expert, _attention_params(m) + per_moe_layer, expert


def _kv_seq(model, S, b, read=False):
    """One sequence's KV (stored, or read by one decode step), written out again."""
    m = model
    full = m.num_layers if m.full_attention_layers is None else m.full_attention_layers
    state = m.linear_layers * m.linear_state_bytes_per_layer
    if m.kv_lora_rank:
        latent = (m.kv_lora_rank + m.qk_rope_head_dim) * b
        if read and m.index_topk:
            return full * (m.index_head_dim * b * S + latent * min(S, m.index_topk)) + state
        return full * (latent + m.index_head_dim * b) * S + state
    tok = 2 * m.num_kv_heads * m.head_dim * b
    return tok * (full * S + m.sliding_layers * min(S, m.sliding_window)) + state


def calibrated_params(path, engine=None):
    """The calibrated profile's parameters for one engine, read straight from the TOML file:
    per chip (efficiencies, the reference chip's where a chip has none) and the engine's set."""
    import tomllib

    with open(path, "rb") as f:
        data = tomllib.load(f)
    engine = engine or data["default_engine"]
    return dict(
        alpha=data["collective_latency_s"],
        hop=data["hop_latency_s"],
        mem=data["kv_memory_fraction"],
        chips=data["chips"],
        engines=data["engines"],
        engine=engine,
    )


def _calibrated(cal, model, chip, y, n, w, context, prompt_len, kv_bytes, d=1, e=1, nodes=1):
    """The calibrated step's pieces for one replica, from the formulas of the profile."""
    eff = cal["chips"].get(chip.name, cal["chips"]["h100"])
    eng = cal["engines"][cal["engine"]]
    m = model
    D, N, V = m.d_model, m.num_heads, m.vocab
    p_d, p_r, p_flop, _, _ = _moe(m)
    lookup = 0 if m.tie_embeddings else D * V
    t, moe_tp = y / d, y / e
    copies = t if m.kv_lora_rank else max(1.0, t / m.num_kv_heads)
    full = m.num_layers if m.full_attention_layers is None else m.full_attention_layers
    attn_layers = full + m.sliding_layers
    dense_mlp = m.dense_mlp_layers if m.dense_mlp_layers is not None else m.num_layers - m.moe_layers

    def attention_flops(S):
        if m.kv_lora_rank:
            return (
                2 * N * (2 * m.kv_lora_rank + m.qk_rope_head_dim) * full * (min(S, m.index_topk) if m.index_topk else S)
            )
        return 4 * N * m.head_dim * (full * S + m.sliding_layers * min(S, m.sliding_window))

    peak = {"fp8": chip.fp8_flops, "int8": chip.int8_flops, "fp4": chip.fp4_flops}.get(w) or chip.bf16_flops
    bw = y * chip.hbm_bytes_per_s * eff["hbm_efficiency"]
    # weights in a dtype the chip has no units for stream through the engine's dequantizing kernel
    units = {"fp8": chip.fp8_flops, "int8": chip.int8_flops, "fp4": chip.fp4_flops}
    native = w in ("bf16", "fp16") or bool(units.get(w))
    weight_bw = bw * (1.0 if native else eng.get("dequant_efficiency", 1.0))
    fl = y * peak * eff["flops_efficiency"]
    fl_prefill = y * peak * eff["prefill_efficiency"]
    link = chip.link_bytes_per_s if chip.kind == "gpu" else chip.link_bytes_per_s * chip.links_per_axis * max(n, 1)
    ring = lambda x: 2 * (x - 1) / x  # noqa: E731
    L_tp = attn_layers + m.linear_layers + dense_mlp
    k = m.experts_per_token
    comm_tok = (
        2
        * D
        * (L_tp * ring(t) / d + m.moe_layers * (ring(moe_tp) / e + 2 * k * (e - 1) / (e * y)))
        / (link * eff["link_efficiency"])
    )
    if nodes > 1 and e > 1:  # experts over several nodes: the all-to-all at its slower leg
        here = e / nodes
        slowest = max((here - 1) / link, (e - here) / chip.scale_out_bytes_per_s) / eff["link_efficiency"]
        comm_tok = (
            2 * D * (L_tp * ring(t) / d + m.moe_layers * ring(moe_tp) / e) / (link * eff["link_efficiency"])
            + 2 * D * m.moe_layers * 2 * k / (e * y) * slowest
        )
    collectives = L_tp * (t > 1) + m.moe_layers * ((moe_tp > 1) + 2 * (e > 1))
    axes = max(n, 1)
    hops = 1.0 if chip.kind == "gpu" or y <= 1 else axes * 2.0 * (round(y ** (1 / axes)) - 1)
    return dict(
        t0=eng["step_overhead_s"]
        + m.num_layers * eng["layer_overhead_s"]
        + m.moe_layers * eng.get("moe_layer_overhead_s", 0.0)
        + collectives * (cal["alpha"] + hops * cal["hop"]),
        per_seq=eng["seq_overhead_s"] + comm_tok,
        weights=(p_d - lookup) * d * BYTES[w] / weight_bw,
        experts=p_r * BYTES[w] / weight_bw,
        miss=1 - k / m.num_experts if m.num_experts else 1.0,
        kv=_kv_seq(m, context, kv_bytes, read=True) * copies / bw,
        dec=(2 * (p_flop - lookup) + attention_flops(context)) / fl,
        prefill=prompt_len
        * ((2 * (p_flop - lookup - D * V) + attention_flops(prompt_len) / 2) / fl_prefill + comm_tok),
        mem=cal["mem"],
        copies=copies,
    )


def _terms(
    model, chip, y, n, w, kv, context, prompt_len=1, mfu=0.4, colocated=False, decode_len=1, cal=None, d=1, e=1, nodes=1
):
    P = _params(model)
    kv_tok = 2 * model.num_kv_heads * model.head_dim * model.num_layers * BYTES[kv]
    w_ici = chip.link_bytes_per_s * chip.links_per_axis
    prefill = 2 * P * prompt_len / (y * chip.bf16_flops * mfu)
    moe = None
    if model.num_experts or model.kv_lora_rank or model.sliding_layers or model.linear_layers:
        p_d, p_r, p_flop, layer_dense, expert = _moe(model)
        copies = y // d if model.kv_lora_rank else 1
        k, E = model.experts_per_token, model.num_experts
        moe = dict(
            p_d=p_d * d,
            p_r=p_r,
            p_flop=p_flop,
            layer_dense=layer_dense * d,
            layer_experts=E * expert,
            layer_flop=layer_dense + k * expert,
            miss=1 - k / E if E else 1.0,
            d=d,
            e=e,
            k=k,
            kv_read=_kv_seq(model, context, BYTES[kv], read=True) * copies,
        )
        P = p_d * d + p_r
        kv_tok = 0.0
        prefill = 2 * p_flop * prompt_len / (y * chip.bf16_flops * mfu)
    c = _calibrated(cal, model, chip, y, n, w, context, prompt_len, BYTES[kv], d, e, nodes) if cal else None
    if c:
        prefill = c["prefill"]
    kv_seq = kv_tok * context
    prompt_kv = kv_tok * prompt_len
    if c:  # grouped-query attention repeats its KV past K heads under the calibrated profile
        kv_seq, prompt_kv = kv_seq * c["copies"], prompt_kv * c["copies"]
    if moe:
        copies = y // d if model.kv_lora_rank else (c["copies"] if c else 1)
        kv_seq = _kv_seq(model, context, BYTES[kv]) * copies
        prompt_kv = _kv_seq(model, prompt_len, BYTES[kv]) * copies
    return dict(
        moe=moe,
        P=P,
        bw=BYTES[w],
        kv_seq=kv_seq,
        Y=y,
        n=n,
        M=chip.hbm_bytes * (c["mem"] if c else 1.0),
        W=chip.hbm_bytes_per_s,
        C=chip.bf16_flops,
        Wici=w_ici,
        D=model.d_model,
        F=model.d_ff,
        prefill=prefill,
        prompt_kv=prompt_kv,
        T=prompt_len,
        col=prefill / decode_len if colocated else 0.0,
        cal=c,
    )


def _comms_ok(t, B):
    B = np.asarray(B, dtype=float)
    if "stage" in t:  # a pipeline: each stage on its microbatch
        return _comms_ok(t["stage"], np.maximum(B, t["pp"]) / t["pp"])
    m = t["moe"]
    if m and m["k"] and t["Y"] > 1:
        Y, d, e, link = t["Y"], m["d"], m["e"], t["n"] * t["Wici"]
        coll = B * t["D"] * 2 * ((Y / d > 1) / d + (Y / e > 1) / e + 2 * m["k"] * (e - 1) / (e * Y)) / link
        nodes = t.get("nodes", 1)
        if nodes > 1 and e > 1:  # the all-to-all's slower leg: NVLink in a node, or the NICs out of it
            here = e / nodes
            a2a = 2 * m["k"] / (e * Y) * max((here - 1) / link, (e - here) / t["Wout"])
            coll = B * t["D"] * 2 * (((Y / d > 1) / d + (Y / e > 1) / e) / link + a2a)
        reads = (m["layer_dense"] + m["layer_experts"] * (1 - m["miss"] ** B)) * t["bw"] / (Y * t["W"])
        return ~(coll > np.maximum(reads, 2 * B * m["layer_flop"] / (Y * t["C"])))
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
    if "stage" in t:  # pp microbatches in flight; below pp sequences the stages idle
        pp = t["pp"]
        b = np.maximum(B, pp)
        hops = pp * HOP_S + (pp - 1) * (b / pp) * t["D"] * 2 / t["Wout"]
        return _step(t["stage"], b / pp) + hops + b * t["col"]
    c = t["cal"]
    if c:
        weights = c["weights"] + c["experts"] * (1 - c["miss"] ** B)
        return c["t0"] + B * (c["per_seq"] + t["col"]) + np.maximum(weights + B * c["kv"], B * c["dec"])
    m = t["moe"]
    if m:
        t_kv = B * m["kv_read"] / (t["Y"] * t["W"])
        t_params = (m["p_d"] + m["p_r"] * (1 - m["miss"] ** B)) * t["bw"] / (t["Y"] * t["W"])
        t_flops = 2 * m["p_flop"] * B / (t["Y"] * t["C"])
        return t_kv + B * t["col"] + np.maximum(t_flops, t_params)
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


def _splits(model, y):
    """(attention_dp, ep) of a replica of y chips: d in {1, y} with heads divisible by y/d, e in
    {1, y} dividing the experts (a dense model: only (1, 1))."""
    if not model.num_experts:
        return [(1, 1)]
    return [(d, e) for d in {1, y} for e in {1, y} if model.num_heads % (y // d) == 0 and model.num_experts % e == 0]


def _node_layouts(chip, max_nodes):
    """(shape, slice chips, y, n, pp, nodes) of every slice: each of _layouts, then, on a GPU with
    a known scale-out bandwidth, replicas over 2, 4, ... <= max_nodes nodes of its largest slice,
    as a pipeline of one stage per node or as one stage over all of them."""
    for shape, n_chips, y, n in _layouts(chip):
        yield shape, n_chips, y, n, 1, 1
    if chip.kind != "gpu" or not chip.scale_out_bytes_per_s:
        return
    node = max(int(s) for s in chip.topologies)
    nodes = 2
    while nodes <= max_nodes:
        yield str(nodes * node), nodes * node, nodes * node, 1, nodes, nodes
        yield str(nodes * node), nodes * node, nodes * node, 1, 1, nodes
        nodes *= 2


def _node_splits(model, y, pp, nodes):
    """(d, e) of a replica: on one node _splits; a pipeline's stage is one node (_splits of it);
    one stage over several nodes spreads the experts over every chip, attention tensor
    parallel at most inside a node (a dense model has no such layout)."""
    if nodes == 1:
        return _splits(model, y)
    node = y // nodes
    if pp > 1:
        return _splits(model, node)
    if not model.num_experts or model.num_experts % y:
        return []
    return [(y // t, y) for t in sorted({1, node}) if model.num_heads % t == 0]


def _replica(model, chip, y, n, pp, nodes, w, kv, context, T, mfu, colocated, decode_len, cal, d, e):
    """_terms of a replica; a pipeline wraps the terms of one stage's chips (y/pp, the whole
    model) with its HBM (every chip), its prefill (the stages' chips all busy, plus the
    activations crossing pp-1 boundaries) and its boundaries."""
    if pp == 1:
        t = _terms(model, chip, y, n, w, kv, context, T, mfu, colocated, decode_len, cal, d, e, nodes)
        return {**t, "nodes": nodes, "Wout": chip.scale_out_bytes_per_s}
    stage = _terms(model, chip, y // pp, n, w, kv, context, T, mfu, False, decode_len, cal, d, e)
    prefill = stage["prefill"] / pp + (pp - 1) * (HOP_S + T * model.d_model * 2 / chip.scale_out_bytes_per_s)
    return {
        **stage,
        "Y": y,
        "prefill": prefill,
        "col": prefill / decode_len if colocated else 0.0,
        "stage": stage,
        "pp": pp,
        "Wout": chip.scale_out_bytes_per_s,
    }


def engine_runs(engine, model_name, chip, w, k):
    """Whether the engine's flag table (optimizer/launch/data/ENGINE.toml, read here again) has
    the chip's family, a format for the weights (online, or a pre-quantized checkpoint of the
    model) and a KV-cache dtype."""
    import tomllib
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "optimizer" / "launch" / "data" / f"{engine}.toml"
    if not path.exists():
        return True
    t = tomllib.loads(path.read_text())
    family = "tpu" if chip.kind == "tpu" else chip.display_name.split(" ", 1)[0].lower()
    weights_ok = w in t.get("weights", {}).get(family, {}) or model_name in t.get("checkpoints", {}).get(w, {})
    return family in t["families"] and weights_ok and k in t.get("kv", {}).get(family, {})


def _dtypes(chip, asked, options):
    four = chip.four_bit if chip.four_bit in options else "int4"
    return [d for d in (asked or ("bf16", chip.eight_bit, four)) if d in options]


def cheapest_prefill(
    model, chips, chip_names, context, prompt_len, mfu, ttft_s, cal=None, weights=None, kv=None, max_nodes=MAX_NODES
):
    """Per (weights, kv) dtype pair, the lowest prefill cost per prompt of any server that holds
    the weights and one prompt's KV, is not comms-bound on the prompt, and meets the TTFT (the
    dtypes searched as for decode: the asked ones, else each chip's defaults)."""
    best: dict[tuple[str, str], float] = {}
    for name in chip_names:
        chip = chips[name]
        for _, _, y, n, pp, nodes in _node_layouts(chip, max_nodes):
            for w in _dtypes(chip, weights, chip.weight_dtypes):
                splits = _node_splits(model, y, pp, nodes)
                for k, (d, e) in itertools.product(_dtypes(chip, kv, chip.kv_dtypes), splits):
                    if cal and not engine_runs(cal["engine"], model.name, chip, w, k):
                        continue
                    t = _replica(model, chip, y, n, pp, nodes, w, k, context, prompt_len, mfu, False, 1, cal, d, e)
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
    max_nodes=MAX_NODES,
) -> Best | None:
    slo_s = slo_ms / 1e3
    ttft_s = np.inf if ttft_ms is None else ttft_ms / 1e3
    T = prompt_len if prompt_len is not None else max(context - decode_len, 1)
    prefill_usd = (
        cheapest_prefill(model, chips, chip_names, context, T, mfu, ttft_s, cal, weights, kv, max_nodes)
        if serving == "disaggregated"
        else None
    )
    best: Best | None = None
    for name in chip_names:
        chip = chips[name]
        for shape, chips_in_slice, y, n, pp, nodes in _node_layouts(chip, max_nodes):
            for w in _dtypes(chip, weights, chip.weight_dtypes):
                splits = _node_splits(model, y, pp, nodes)
                for k, (d, e) in itertools.product(_dtypes(chip, kv, chip.kv_dtypes), splits):
                    extra = 0.0
                    if prefill_usd is not None:
                        if (w, k) not in prefill_usd:
                            continue
                        extra = prefill_usd[(w, k)]
                    if cal and not engine_runs(cal["engine"], model.name, chip, w, k):
                        continue
                    col = serving == "colocated"
                    t = _replica(model, chip, y, n, pp, nodes, w, k, context, T, mfu, col, decode_len, cal, d, e)
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
                        best = Best(value, float(qpd[j]), name, shape, y, n, w, k, int(feas[j]), pp, nodes)
    return best
