"""From the solver's choice to a Configuration (every metric recomputed from the float
model), and why nothing serves when nothing does."""

from __future__ import annotations

import numpy as np

import constraints
from constraints import prefill
from optimizer.candidates import CandidateTable
from optimizer.costmodel import prefill_servers_per_replica
from optimizer.metrics import measure, prefill_usd_per_query
from optimizer.multinode import describe
from optimizer.profiles import Profile
from optimizer.result import Configuration, PrefillServer
from optimizer.solve import Choice
from optimizer.workload import Workload


def _family(name: str):
    return next(f for f in constraints.FAMILIES if name == f.NAME)


def whole_ratio(ratio: float, tolerance: float = 0.05, max_denominator: int = 1000) -> str:
    """The smallest whole-number ratio p:d within `tolerance` of `ratio` (prefill:decode)."""
    for d in range(1, max_denominator + 1):
        p = max(1, round(ratio * d))
        if abs(p / d - ratio) <= tolerance * ratio:
            return f"{p}:{d}"
    return f"{round(ratio * max_denominator)}:{max_denominator}"


def configuration(
    table: CandidateTable,
    choice: Choice,
    workload: Workload,
    profile: Profile,
    caps: dict[str, np.ndarray],
    objective: str,
) -> Configuration:
    """The chosen plan, every metric recomputed from the float model."""
    i, b, j = choice.row, choice.batch, choice.prefill_row
    m = measure(table, np.array([i]), np.array([b]), workload.decode_len)
    c = table.cost
    step = float(m.step_s[0])
    binding = [name for name, cap in caps.items() if int(cap[i]) == b]
    if objective == "min-latency":
        explanation = "batch 1: the min-latency objective serves one sequence at a time"
    elif binding:
        explanation = "; ".join(_family(n).explain(table, i, b, workload) for n in binding)
    else:
        explanation = f"batch {b}"
    decode_usd = float(m.usd_per_query[0])
    prompt_share = decode_usd * float(c.colocated_s_per_seq[i]) * b / step  # co-located prefill work
    server = None
    ratio = None
    prefill_usd = prompt_share
    ttft = float(c.prefill_s[i]) if workload.colocated else None
    if j is not None:
        prefill_usd = float(prefill_usd_per_query(table, np.array([j]))[0])
        ttft = float(c.prefill_s[j])
        server = PrefillServer(
            **table.row(j),
            prefill_ms=ttft * 1e3,
            cost_per_hour=float(table.slice_chips[j] * table.usd_per_chip_hour[j]),
        )
        ratio = prefill_servers_per_replica(batch=b, step_s=step, decode_len=workload.decode_len, prefill_seconds=ttft)
    total_usd = decode_usd + (prefill_usd if j is not None else 0.0)
    tokens = workload.decode_len + (0 if workload.serving == "decode-only" else workload.prompt_tokens)
    return Configuration(
        **table.row(i),
        batch=b,
        step_ms=step * 1e3,
        breakdown_ms={**profile.breakdown_ms(c, i, b), "prefill": float(c.colocated_s_per_seq[i] * b * 1e3)},
        tokens_per_s_per_chip=float(m.tokens_per_s_per_chip[0]),
        qps_per_chip=float(m.qps_per_chip[0]),
        queries_per_dollar=1.0 / total_usd,
        usd_per_million_tokens=total_usd * 1e6 / tokens,
        usd_per_million_input_tokens=(
            None if workload.serving == "decode-only" else prefill_usd * 1e6 / workload.prompt_tokens
        ),
        usd_per_million_output_tokens=(decode_usd - prompt_share) * 1e6 / workload.decode_len,
        cost_per_hour=float(table.slice_chips[i] * table.usd_per_chip_hour[i]),
        hbm_used_bytes=float(c.weight_bytes[i] + b * c.kv_bytes_per_seq[i]),
        hbm_bytes=float(c.hbm_capacity_bytes[i]),
        binding=binding,
        explanation=explanation,
        serving=workload.serving,
        prefill=server,
        prefill_servers_per_replica=ratio,
        prefill_ratio=whole_ratio(ratio) if ratio is not None else None,
        ttft_ms=ttft * 1e3 if ttft is not None else None,
        decode_queries_per_dollar=float(m.queries_per_dollar[0]),
    )


def _describe(table: CandidateTable, i: int) -> str:
    r = table.row(i)
    nodes = f" ({describe(r['nodes'], r['pp'], r['tp'], r['attention_dp'], r['ep'])})" if r["nodes"] > 1 else ""
    return f"{r['chip']} {r['topology']}, {r['tp']}-way model parallel{nodes}, {r['weights']} weights, {r['kv']} KV"


def infeasible_reason(
    table: CandidateTable, caps: dict[str, np.ndarray], workload: Workload, mask: np.ndarray | None = None
) -> str:
    """Why no row under `mask` serves even one sequence (`caps`: the batch cap of each
    constraint family, as ServingModel.caps): the tightest family, with numbers."""
    mask = np.ones(len(table), bool) if mask is None else mask
    if not mask.any():
        return "no candidate configurations to consider"
    c = table.cost
    fits = mask & (caps["hbm"] >= 1)
    if not fits.any():
        need = c.weight_bytes + c.kv_bytes_per_seq
        i = int(np.flatnonzero(mask)[np.argmax((c.hbm_capacity_bytes - need)[mask])])
        return (
            f"nothing fits in HBM: the weights and one {workload.context}-token KV cache need "
            f"{need[i] / 1e9:.1f} GB, and the closest candidate ({_describe(table, i)}) "
            f"holds {c.hbm_capacity_bytes[i] / 1e9:.1f} GB"
        )
    prompt_ok = fits & (caps["ttft"] >= 1)
    if not prompt_ok.any():
        i = int(np.flatnonzero(fits)[np.argmin(c.prefill_s[fits])])
        return (
            f"the {workload.ttft_ms:g} ms TTFT target is below the fastest co-located prefill of a "
            f"{workload.prompt_tokens}-token prompt: {c.prefill_s[i] * 1e3:.1f} ms ({_describe(table, i)})"
        )
    fast = prompt_ok & (caps["latency"] >= 1)
    if not fast.any():
        step1 = c.step_s(1.0)
        i = int(np.flatnonzero(prompt_ok)[np.argmin(step1[prompt_ok])])
        return (
            f"the {workload.slo_ms:g} ms target is below the fastest decode step of any "
            f"configuration that fits: {step1[i] * 1e3:.2f} ms at batch 1 ({_describe(table, i)})"
        )
    if not (fast & (caps["comms"] >= 1)).any():
        return (
            "every configuration that fits and meets the latency target is comms-bound even at "
            "batch 1 (its collectives outlast its matmuls)"
        )
    return prefill.reason(table, workload, mask)
