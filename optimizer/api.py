"""The Python API: optimize() and evaluate(), returning the dataclasses --json serializes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import constraints
from optimizer.candidates import CandidateTable, build_table, single_candidate
from optimizer.catalog import DTYPES, Chip, Model, load_chips, load_model
from optimizer.errors import InputError, unknown_name
from optimizer.metrics import measure
from optimizer.result import Configuration, Evaluation, OptimizeResult, SolveStats
from optimizer.solve import Choice, DecodeModel, family_caps
from optimizer.workload import OBJECTIVES, Workload


def _family(name: str):
    return next(f for f in constraints.FAMILIES if f.NAME == name)


def _resolve_model(model: Model | str | Path) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def _check_dtypes(kind: str, values: tuple[str, ...] | None) -> None:
    for v in values or ():
        if v not in DTYPES:
            raise unknown_name(f"{kind} dtype", v, DTYPES)


def configuration(table: CandidateTable, choice: Choice, workload: Workload,
                  caps: dict[str, np.ndarray], objective: str) -> Configuration:
    """The chosen plan, every metric recomputed from the float model."""
    i, b = choice.row, choice.batch
    rows = np.array([i])
    m = measure(table, rows, np.array([b]), workload.decode_len)
    c = table.cost
    binding = [name for name, cap in caps.items() if int(cap[i]) == b]
    if binding:
        explanation = "; ".join(_family(n).explain(table, i, b, workload) for n in binding)
    elif objective == "min-latency":
        explanation = "batch 1: the min-latency objective serves one sequence at a time"
    else:
        explanation = f"batch {b}"
    return Configuration(
        **table.row(i), batch=b,
        step_ms=float(m.step_s[0] * 1e3),
        breakdown_ms={"params": float(c.params_s[i] * 1e3), "kv": float(c.kv_s_per_seq[i] * b * 1e3),
                      "flops": float(c.flops_s_per_seq[i] * b * 1e3)},
        tokens_per_s_per_chip=float(m.tokens_per_s_per_chip[0]),
        qps_per_chip=float(m.qps_per_chip[0]),
        queries_per_dollar=float(m.queries_per_dollar[0]),
        usd_per_million_tokens=float(m.usd_per_million_tokens[0]),
        cost_per_hour=float(table.slice_chips[i] * table.usd_per_chip_hour[i]),
        hbm_used_bytes=float(c.weight_bytes[i] + b * c.kv_bytes_per_seq[i]),
        hbm_bytes=float(c.hbm_capacity_bytes[i]),
        binding=binding, explanation=explanation,
    )


def _describe(table: CandidateTable, i: int) -> str:
    r = table.row(i)
    return f"{r['chip']} {r['topology']}, {r['tp']}-way model parallel, {r['weights']} weights, {r['kv']} KV"


def infeasible_reason(table: CandidateTable, caps: dict[str, np.ndarray], workload: Workload,
                      mask: np.ndarray | None = None) -> str:
    """Why no row under `mask` serves even one sequence: the tightest family, with numbers."""
    mask = np.ones(len(table), bool) if mask is None else mask
    if not mask.any():
        return "no candidate configurations to consider"
    c = table.cost
    fits = mask & (caps["hbm"] >= 1)
    if not fits.any():
        need = c.weight_bytes + c.kv_bytes_per_seq
        i = int(np.flatnonzero(mask)[np.argmax((c.hbm_capacity_bytes - need)[mask])])
        return (f"nothing fits in HBM: the weights and one {workload.context}-token KV cache need "
                f"{need[i] / 1e9:.1f} GB, and the closest candidate ({_describe(table, i)}) "
                f"holds {c.hbm_capacity_bytes[i] / 1e9:.1f} GB")
    fast = fits & (caps["latency"] >= 1)
    if not fast.any():
        step1 = c.step_s(1.0)
        i = int(np.flatnonzero(fits)[np.argmin(step1[fits])])
        return (f"the {workload.slo_ms:g} ms target is below the fastest decode step of any "
                f"configuration that fits: {step1[i] * 1e3:.2f} ms at batch 1 ({_describe(table, i)})")
    return ("every configuration that fits and meets the latency target is comms-bound even at "
            "batch 1 (its collectives outlast its matmuls)")


def optimize(model: Model | str | Path, slo_ms: float, *, chips: dict[str, Chip] | None = None,
             chip_names: tuple[str, ...] | list[str] | None = None, context: int = 8192,
             decode_len: int = 512, weights: tuple[str, ...] | list[str] | None = None,
             kv: tuple[str, ...] | list[str] | None = None,
             objective: str = "queries-per-dollar", top: int = 3) -> OptimizeResult:
    """The configuration with the best `objective` whose decode step stays within `slo_ms`.

    chips: the catalog (default load_chips()); chip_names: restrict to these chip types;
    weights/kv: restrict dtypes (default per chip: bf16, its 8-bit format, int4);
    top: how many configurations to rank (the winner and top-1 runners-up).
    Raises InputError (a ValueError) for bad input; an unreachable target is a result with
    status "infeasible" and a reason.
    """
    started = time.perf_counter()
    if slo_ms is None:
        raise InputError("slo_ms is required")
    mdl = _resolve_model(model)
    workload = Workload(context=context, decode_len=decode_len, slo_ms=slo_ms)
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
                unserved[n] = (f"supports none of the requested {kind} dtypes ({', '.join(asked)}); "
                               f"it has {', '.join(options)}")
    if unserved and len(unserved) == len(names):
        first = next(iter(unserved))
        raise InputError(f"{first} {unserved[first]}")
    selected = {n: catalog[n] for n in names}
    table = build_table(mdl, selected, workload.context, w, k)
    caps = family_caps(table, workload)
    dm = DecodeModel(table, workload, objective, caps)
    status, choice = dm.solve()
    best = configuration(table, choice, workload, caps, objective) if choice else None
    runners: list[Configuration] = []
    alternatives: list[Configuration] = []
    reason = None
    if choice is None:
        reason = infeasible_reason(table, caps, workload)
    else:
        taken = [choice.row]
        while len(runners) < top - 1:
            _, nxt = dm.solve(exclude=tuple(taken))
            if nxt is None:
                break
            taken.append(nxt.row)
            runners.append(configuration(table, nxt, workload, caps, objective))
    for n in names:
        if n in unserved:
            continue
        if choice is not None and table.chip[choice.row] == n:
            continue
        _, alt = dm.solve(chip=n)
        if alt is None:
            unserved[n] = infeasible_reason(table, caps, workload, table.chip == n)
        elif choice is not None:
            alternatives.append(configuration(table, alt, workload, caps, objective))
    seconds = time.perf_counter() - started
    return OptimizeResult(
        status=status, reason=reason, model=mdl.name, objective=objective,
        context=workload.context, decode_len=workload.decode_len, slo_ms=slo_ms,
        best=best, runners_up=runners, alternatives=alternatives, unserved=unserved,
        solve=SolveStats(seconds=seconds, candidates=len(table), feasible_candidates=len(dm.rows),
                         solver_status=status, solves=dm.solves),
    )


def evaluate(model: Model | str | Path, chip: str, topology: str, *, weights: str, kv: str,
             batch: int, tp: int | None = None, context: int = 8192, decode_len: int = 512,
             chips: dict[str, Chip] | None = None) -> Evaluation:
    """The book-profile roofline of one fixed configuration, whether or not it fits."""
    mdl = _resolve_model(model)
    workload = Workload(context=context, decode_len=decode_len)
    catalog = chips if chips is not None else load_chips()
    if chip not in catalog:
        raise unknown_name("chip", chip, sorted(catalog))
    _check_dtypes("weights", (weights,))
    _check_dtypes("kv", (kv,))
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    if tp is not None and (isinstance(tp, bool) or not isinstance(tp, int) or tp < 1):
        raise InputError(f"tp must be a positive integer, got {tp!r}")
    table = single_candidate(mdl, catalog[chip], topology, tp, weights, kv, workload.context)
    c = table.cost
    rows = np.array([0])
    m = measure(table, rows, np.array([batch]), decode_len)
    comms = _family("comms")
    hbm = _family("hbm")
    kv_bytes = float(c.kv_bytes_per_seq[0] * batch)
    return Evaluation(
        model=mdl.name, **table.row(0), batch=batch, context=context, decode_len=decode_len,
        param_count=mdl.param_count, param_bytes=float(c.weight_bytes[0]),
        kv_bytes_per_token=float(c.kv_bytes_per_token[0]), kv_bytes=kv_bytes,
        hbm_bytes=float(c.hbm_capacity_bytes[0]),
        hbm_free_bytes=float(c.hbm_capacity_bytes[0] - c.weight_bytes[0]),
        hbm_used_bytes=float(c.weight_bytes[0]) + kv_bytes,
        fits=bool(hbm.satisfied(table, rows, np.array([batch]), workload)[0]),
        max_batch=max(int(c.max_batch_hbm()[0]), 0),
        step_ms=float(m.step_s[0] * 1e3),
        breakdown_ms={"params": float(c.params_s[0] * 1e3), "kv": float(c.kv_s_per_seq[0] * batch * 1e3),
                      "flops": float(c.flops_s_per_seq[0] * batch * 1e3)},
        critical_batch=float(c.critical_batch[0]),
        comms_bound=bool(comms.comms_bound(table, rows, np.array([batch]))[0]),
        tokens_per_s=float(m.tokens_per_s_per_chip[0] * table.slice_chips[0]),
        tokens_per_s_per_chip=float(m.tokens_per_s_per_chip[0]),
        qps_per_chip=float(m.qps_per_chip[0]),
        queries_per_dollar=float(m.queries_per_dollar[0]),
        usd_per_million_tokens=float(m.usd_per_million_tokens[0]),
        cost_per_hour=float(table.slice_chips[0] * table.usd_per_chip_hour[0]),
    )
