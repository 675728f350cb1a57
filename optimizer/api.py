"""The Python API: optimize() and evaluate(), returning the dataclasses --json serializes."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

import constraints
from constraints import prefill
from constraints.demand import Offer, servable_qps
from optimizer.candidates import CandidateTable, build_table, single_candidate
from optimizer.catalog import DTYPES, Chip, Model, load_chips, load_model
from optimizer.costmodel import Roofline, prefill_servers_per_replica
from optimizer.demand import MAX_QPS, solve_demand
from optimizer.errors import InputError, unknown_name
from optimizer.metrics import measure, prefill_usd_per_query
from optimizer.result import (
    Configuration,
    Deployment,
    DeploymentEntry,
    Evaluation,
    OptimizeResult,
    PrefillServer,
    SolveStats,
)
from optimizer.solve import Choice, ServingModel
from optimizer.workload import OBJECTIVES, Workload

HOURS_PER_MONTH = 730.0


def _family(name: str):
    return next(f for f in constraints.FAMILIES if name == f.NAME)


def _resolve_model(model: Model | str | Path) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def _check_dtypes(kind: str, values: tuple[str, ...] | None) -> None:
    for v in values or ():
        if v not in DTYPES:
            raise unknown_name(f"{kind} dtype", v, DTYPES)


def whole_ratio(ratio: float, tolerance: float = 0.05, max_denominator: int = 1000) -> str:
    """The smallest whole-number ratio p:d within `tolerance` of `ratio` (prefill:decode)."""
    for d in range(1, max_denominator + 1):
        p = max(1, round(ratio * d))
        if abs(p / d - ratio) <= tolerance * ratio:
            return f"{p}:{d}"
    return f"{round(ratio * max_denominator)}:{max_denominator}"


def configuration(
    table: CandidateTable, choice: Choice, workload: Workload, caps: dict[str, np.ndarray], objective: str
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
        breakdown_ms={**_breakdown(c, i, b, workload), "prefill": float(c.colocated_s_per_seq[i] * b * 1e3)},
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


def _breakdown(c: Roofline, i: int, b: int, workload: Workload) -> dict[str, float]:
    """The step's terms in ms at batch b; the calibrated profile adds its overheads and collectives."""
    out = {
        "params": float(c.params_s[i] * 1e3),
        "kv": float(c.kv_s_per_seq[i] * b * 1e3),
        "flops": float(c.flops_s_per_seq[i] * b * 1e3),
    }
    if workload.profile == "calibrated":
        out["overheads_and_collectives"] = float((c.fixed_s[i] + c.overhead_s_per_seq[i] * b) * 1e3)
    return out


def _critical_batch(c: Roofline, workload: Workload) -> float | None:
    """The batch where the step turns compute-bound: the book's C*b_w/(2*W_hbm); under the
    calibrated profile where B*T_flops1 = T_params + B*kv_in (None: never)."""
    if workload.profile == "book":
        return float(c.critical_batch[0])
    _, kv_in = c.slopes()
    gain = float(c.flops_s_per_seq[0] - kv_in[0])
    return float(c.params_s[0]) / gain if gain > 0 else None


def _describe(table: CandidateTable, i: int) -> str:
    r = table.row(i)
    return f"{r['chip']} {r['topology']}, {r['tp']}-way model parallel, {r['weights']} weights, {r['kv']} KV"


def infeasible_reason(sm: ServingModel, workload: Workload, mask: np.ndarray | None = None) -> str:
    """Why no row under `mask` serves even one sequence: the tightest family, with numbers."""
    table, caps = sm.table, sm.caps
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


def _demand(sm: ServingModel, workload: Workload, qps: float, time_limit_s: float) -> Deployment:
    """The cheapest whole deployment serving `qps`, from the model's feasible candidates."""
    table = sm.table
    groups = table.dtype_groups
    rows = sm.feasible_rows
    batch = sm.cap[rows]
    m = measure(table, rows, batch, workload.decode_len)
    slice_usd = table.slice_chips * table.usd_per_chip_hour
    decode = [
        Offer(int(r), str(groups[r]), float(table.replicas[r] * q), float(slice_usd[r]))
        for r, q in zip(rows.tolist(), (batch / (m.step_s * workload.decode_len)).tolist())
    ]
    p_rows = sm.prefill_rows_all
    prefill_offers = [
        Offer(int(r), str(groups[r]), float(table.replicas[r] / table.cost.prefill_s[r]), float(slice_usd[r]))
        for r in p_rows.tolist()
    ]
    plan = solve_demand(qps, decode, prefill_offers, workload.prefill_servers, time_limit_s)
    cap = dict(zip(rows.tolist(), batch.tolist()))
    step = dict(zip(rows.tolist(), m.step_s.tolist()))

    def entry(role: str, offer: Offer, n: int) -> DeploymentEntry:
        r = table.row(offer.row)
        per_slice = r.pop("replicas")
        r.pop("chips")
        return DeploymentEntry(
            role=role,
            **r,
            chips=int(table.slice_chips[offer.row]),
            slices=n,
            replicas=per_slice * n if role == "decode" else 0,
            servers=per_slice * n if role == "prefill" else 0,
            batch=int(cap[offer.row]) if role == "decode" else None,
            step_ms=step[offer.row] * 1e3 if role == "decode" else None,
            prefill_ms=float(table.cost.prefill_s[offer.row] * 1e3) if role == "prefill" else None,
            qps_per_slice=offer.qps_per_slice,
            cost_per_hour=offer.usd_per_hour * n,
        )

    d_entries = [entry("decode", o, n) for o, n in plan.decode]
    p_entries = [entry("prefill", o, n) for o, n in plan.prefill]
    cost = sum(e.cost_per_hour for e in d_entries + p_entries)
    served = servable_qps(plan.decode, plan.prefill, workload.prefill_servers)
    reason = None
    if plan.cost_usd_int is None:
        reason = (
            infeasible_reason(sm, workload)
            if not len(rows)
            else f"the solver found no deployment within the time limit ({plan.status})"
        )
    gap = 0.0
    if plan.cost_usd_int and plan.bound_usd_int is not None:
        gap = max(0.0, (plan.cost_usd_int - plan.bound_usd_int) / plan.cost_usd_int)
    return Deployment(
        qps=qps,
        status=plan.status,
        reason=reason,
        decode=d_entries,
        prefill=p_entries,
        cost_per_hour=cost,
        cost_per_month=cost * HOURS_PER_MONTH,
        qps_capacity=served,
        headroom_qps=served - qps if plan.decode else 0.0,
        headroom_pct=100.0 * (served - qps) / qps if plan.decode else 0.0,
        total_chips=sum(e.chips * e.slices for e in d_entries + p_entries),
        seconds=plan.seconds,
        gap=gap,
    )


def optimize(
    model: Model | str | Path,
    slo_ms: float,
    *,
    chips: dict[str, Chip] | None = None,
    chip_names: tuple[str, ...] | list[str] | None = None,
    context: int = 8192,
    decode_len: int = 512,
    weights: tuple[str, ...] | list[str] | None = None,
    kv: tuple[str, ...] | list[str] | None = None,
    objective: str = "queries-per-dollar",
    top: int = 3,
    prompt_len: int | None = None,
    prefill_mfu: float = 0.4,
    ttft_ms: float | None = None,
    serving: str = "disaggregated",
    qps: float | None = None,
    compare_colocated: bool = False,
    time_limit_s: float = 5.0,
    alternatives: bool = True,
    profile: str = "book",
    engine: str | None = None,
    calibration: str | None = None,
) -> OptimizeResult:
    """The configuration with the best `objective` whose decode step stays within `slo_ms`.

    chips: the catalog (default load_chips()); chip_names: restrict to these chip types;
    weights/kv: restrict dtypes (default per chip: bf16, its 8-bit format, int4);
    top: how many configurations to rank (the winner and top-1 runners-up);
    prompt_len (default context - decode_len), prefill_mfu, ttft_ms: the prefill side;
    serving: "disaggregated" (prefill servers, the default), "colocated" or "decode-only";
    qps: also size the cheapest whole deployment for this demand (queries per second);
    compare_colocated: also solve the other of disaggregated/colocated and compare;
    alternatives: also find the best configuration of every other chip type (one solve each);
    profile: "book" (the chapter's roofline) or "calibrated" (fitted to measured serving; engine
    and calibration pick the engine's parameters and a parameter file).
    Raises InputError (a ValueError) for bad input; an unreachable target is a result with
    status "infeasible" and a reason.
    """
    started = time.perf_counter()
    if slo_ms is None:
        raise InputError("slo_ms is required")
    if qps is not None and (
        isinstance(qps, bool) or not isinstance(qps, (int, float)) or not (qps > 0 and math.isfinite(qps))
    ):
        raise InputError(f"qps (--qps) must be a positive number of queries per second, got {qps!r}")
    if qps is not None and qps > MAX_QPS:
        raise InputError(
            f"qps (--qps) {qps:g} is above {MAX_QPS:g} queries per second, beyond what the demand "
            "model's integers represent exactly"
        )
    mdl = _resolve_model(model)
    workload = Workload(
        context=context,
        decode_len=decode_len,
        slo_ms=slo_ms,
        prompt_len=prompt_len,
        prefill_mfu=prefill_mfu,
        ttft_ms=ttft_ms,
        serving=serving,
        profile=profile,
        engine=engine,
        calibration=calibration,
    )
    if objective not in OBJECTIVES:
        raise unknown_name("objective", objective, list(OBJECTIVES))
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a positive integer, got {top!r}")
    catalog = chips if chips is not None else load_chips()
    names = list(dict.fromkeys(chip_names)) if chip_names else sorted(catalog)
    for n in names:
        if n not in catalog:
            raise unknown_name("chip", n, sorted(catalog))
    w = tuple(dict.fromkeys(weights)) if weights else None
    k = tuple(dict.fromkeys(kv)) if kv else None
    _check_dtypes("weights", w)
    _check_dtypes("kv", k)

    unserved: dict[str, str] = {}
    for n in names:
        chip = catalog[n]
        for kind, asked, options in (("weights", w, chip.weight_dtypes), ("kv", k, chip.kv_dtypes)):
            if asked and not set(asked) & set(options):
                unserved[n] = (
                    f"supports none of the requested {kind} dtypes ({', '.join(asked)}); it has {', '.join(options)}"
                )
    if unserved and len(unserved) == len(names):
        first = next(iter(unserved))
        raise InputError(f"{first} {unserved[first]}")
    selected = {n: catalog[n] for n in names}
    table = build_table(mdl, selected, workload, w, k)
    sm = ServingModel(table, workload, objective, keep_per_class=top)
    status, choice = sm.solve()
    best = configuration(table, choice, workload, sm.caps, objective) if choice else None
    runners: list[Configuration] = []
    alts: list[Configuration] = []
    reason = None
    if choice is None:
        reason = infeasible_reason(sm, workload)
    else:
        taken = [choice.row]
        while len(runners) < top - 1:
            _, nxt = sm.solve(exclude=tuple(taken))
            if nxt is None:
                break
            taken.append(nxt.row)
            runners.append(configuration(table, nxt, workload, sm.caps, objective))
    for n in names if alternatives else []:
        if n in unserved:
            continue
        if choice is not None and table.chip[choice.row] == n:
            continue
        _, alt = sm.solve(chip=n)
        if alt is None:
            unserved[n] = infeasible_reason(sm, workload, table.chip == n)
        elif choice is not None:
            alts.append(configuration(table, alt, workload, sm.caps, objective))
    deployment = _demand(sm, workload, qps, time_limit_s) if qps is not None else None
    notes = []
    if workload.serving != "decode-only":
        notes.append("TTFT is one prompt's prefill time; queueing for a prefill server is ignored")
        if workload.prompt_tokens + workload.decode_len > workload.context:
            notes.append(
                f"prompt ({workload.prompt_tokens}) + decode ({workload.decode_len}) tokens exceed the "
                f"context ({workload.context}); KV caches are sized for the context, as in the chapter"
            )
    if profile == "calibrated":
        from optimizer.calibration import profile_notes

        notes += profile_notes(
            calibration, engine, workload.serving != "decode-only", {str(c) for c in table.chip.tolist()}
        )
    comparison = None
    if compare_colocated and workload.serving != "decode-only":
        other_mode = "colocated" if workload.prefill_servers else "disaggregated"
        other = optimize(
            mdl,
            slo_ms,
            chips=catalog,
            chip_names=names,
            context=context,
            decode_len=decode_len,
            weights=weights,
            kv=kv,
            objective=objective,
            top=1,
            prompt_len=prompt_len,
            prefill_mfu=prefill_mfu,
            ttft_ms=ttft_ms,
            serving=other_mode,
            qps=qps,
            time_limit_s=time_limit_s,
            alternatives=False,
            profile=profile,
            engine=engine,
            calibration=calibration,
        )
        comparison = _compare({workload.serving: (best, deployment), other_mode: (other.best, other.deployment)})
    seconds = time.perf_counter() - started
    return OptimizeResult(
        status=status,
        reason=reason,
        model=mdl.name,
        objective=objective,
        context=workload.context,
        decode_len=workload.decode_len,
        slo_ms=slo_ms,
        best=best,
        runners_up=runners,
        alternatives=alts,
        unserved=unserved,
        solve=SolveStats(
            seconds=seconds,
            candidates=len(table),
            feasible_candidates=len(sm.feasible_rows),
            solver_status=status,
            solves=sm.solves,
        ),
        serving=workload.serving,
        prompt_len=None if workload.serving == "decode-only" else workload.prompt_tokens,
        ttft_target_ms=ttft_ms,
        deployment=deployment,
        comparison=comparison,
        notes=notes,
        profile=profile,
    )


def _compare(modes: dict[str, tuple[Configuration | None, Deployment | None]]) -> dict[str, Any]:
    """Per serving mode its queries per dollar (and deployment cost), and which is cheaper."""
    out: dict[str, Any] = {}
    for mode, (best, dep) in sorted(modes.items()):
        out[mode] = {
            "queries_per_dollar": best.queries_per_dollar if best else None,
            "cost_per_hour": dep.cost_per_hour if dep and dep.decode else None,
        }
    use_deployment = all(v["cost_per_hour"] is not None for v in out.values())
    if use_deployment:
        out["cheaper"] = min(out, key=lambda m: (out[m]["cost_per_hour"], m))
        out["by"] = "deployment cost per hour"
    else:
        served = [m for m in out if out[m]["queries_per_dollar"] is not None]
        out["cheaper"] = max(served, key=lambda m: (out[m]["queries_per_dollar"], m)) if served else None
        out["by"] = "queries per dollar"
    return out


def evaluate(
    model: Model | str | Path,
    chip: str,
    topology: str,
    *,
    weights: str,
    kv: str,
    batch: int,
    tp: int | None = None,
    context: int = 8192,
    decode_len: int = 512,
    prompt_len: int | None = None,
    prefill_mfu: float = 0.4,
    chips: dict[str, Chip] | None = None,
    profile: str = "book",
    engine: str | None = None,
    calibration: str | None = None,
) -> Evaluation:
    """The roofline (book or calibrated profile) of one fixed configuration, whether or not it
    fits; the prefill figures are for a prefill server of this same configuration."""
    mdl = _resolve_model(model)
    workload = Workload(
        context=context,
        decode_len=decode_len,
        prompt_len=prompt_len,
        prefill_mfu=prefill_mfu,
        serving="decode-only",
        profile=profile,
        engine=engine,
        calibration=calibration,
    )
    catalog = chips if chips is not None else load_chips()
    if chip not in catalog:
        raise unknown_name("chip", chip, sorted(catalog))
    _check_dtypes("weights", (weights,))
    _check_dtypes("kv", (kv,))
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    if tp is not None and (isinstance(tp, bool) or not isinstance(tp, int) or tp < 1):
        raise InputError(f"tp must be a positive integer, got {tp!r}")
    table = single_candidate(mdl, catalog[chip], topology, tp, weights, kv, workload)
    c = table.cost
    rows = np.array([0])
    m = measure(table, rows, np.array([batch]), decode_len)
    comms = _family("comms")
    hbm = _family("hbm")
    kv_bytes = float(c.kv_bytes_per_seq[0] * batch)
    return Evaluation(
        model=mdl.name,
        **table.row(0),
        batch=batch,
        context=context,
        decode_len=decode_len,
        param_count=mdl.param_count,
        param_bytes=float(c.weight_bytes[0]),
        kv_bytes_per_token=float(c.kv_bytes_per_token[0]),
        kv_bytes=kv_bytes,
        hbm_bytes=float(c.hbm_capacity_bytes[0]),
        hbm_free_bytes=float(c.hbm_capacity_bytes[0] - c.weight_bytes[0]),
        hbm_used_bytes=float(c.weight_bytes[0]) + kv_bytes,
        fits=bool(hbm.satisfied(table, rows, np.array([batch]), workload)[0]),
        max_batch=max(int(c.max_batch_hbm()[0]), 0),
        step_ms=float(m.step_s[0] * 1e3),
        breakdown_ms=_breakdown(c, 0, batch, workload),
        critical_batch=_critical_batch(c, workload),
        comms_bound=bool(comms.comms_bound(table, rows, np.array([batch]))[0]),
        tokens_per_s=float(m.tokens_per_s_per_chip[0] * table.slice_chips[0]),
        tokens_per_s_per_chip=float(m.tokens_per_s_per_chip[0]),
        qps_per_chip=float(m.qps_per_chip[0]),
        queries_per_dollar=float(m.queries_per_dollar[0]),
        usd_per_million_tokens=float(m.usd_per_million_tokens[0]),
        cost_per_hour=float(table.slice_chips[0] * table.usd_per_chip_hour[0]),
        prompt_len=workload.prompt_tokens,
        prefill_mfu=prefill_mfu if profile == "book" else None,
        prefill_ms=float(c.prefill_s[0] * 1e3),
        prompt_fits=bool(prefill.prompt_fits(table, rows)[0]),
        prefill_servers_per_replica=prefill_servers_per_replica(
            batch=batch, step_s=float(m.step_s[0]), decode_len=decode_len, prefill_seconds=float(c.prefill_s[0])
        ),
        profile=profile,
    )
