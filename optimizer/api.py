"""The Python API: optimize() and evaluate(), returning the dataclasses --json serializes.

Every entry point takes a model, a `Workload` (what is served) and a profile (how it is
costed: `Book()` or `Calibrated(...)`, see optimizer.profiles); `Search` says where to look.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from constraints import comms, hbm, prefill
from optimizer.candidates import CandidateTable, build_table, single_candidate
from optimizer.catalog import DTYPES, Chip, check_priced, load_chips, lookup_chip
from optimizer.configuration import configuration, infeasible_reason
from optimizer.costmodel import prefill_servers_per_replica
from optimizer.demand import MAX_QPS, deployment
from optimizer.errors import InputError, check_choice, check_positive_int, check_positive_number
from optimizer.metrics import measure
from optimizer.models import Model, load_model
from optimizer.multinode import DEFAULT_MAX_NODES, check_max_nodes
from optimizer.profiles import DEFAULT_PROFILE, Book, Profile, engine_refusal
from optimizer.result import Configuration, Deployment, Evaluation, OptimizeResult, SolveStats
from optimizer.solve import ServingModel
from optimizer.workload import OBJECTIVES, Workload


def _resolve_model(model: Model | str | Path) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def _dtypes(kind: str, values: tuple[str, ...] | list[str] | None) -> tuple[str, ...] | None:
    """The asked dtypes without repeats (None: each chip's defaults); unknown names raise."""
    if not values:
        return None
    for v in values:
        check_choice(f"{kind} dtype", v, DTYPES)
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Search:
    """Where optimize() looks: a chip catalog (None: the built-in one, load_chips()), which of
    its chip types (None: all that have a price), which weight and KV dtypes (None: each chip's
    defaults: bf16, its native 8-bit and 4-bit formats), and up to how many nodes one replica
    may span (GPUs whose scale-out bandwidth is known: 2, 4, ... nodes; 1: one node only)."""

    catalog: dict[str, Chip] | None = None
    chips: tuple[str, ...] | list[str] | None = None
    weights: tuple[str, ...] | list[str] | None = None
    kv: tuple[str, ...] | list[str] | None = None
    max_nodes: int = DEFAULT_MAX_NODES

    def __post_init__(self) -> None:
        check_max_nodes(self.max_nodes)

    def resolve(self) -> tuple[dict[str, Chip], list[str], tuple[str, ...] | None, tuple[str, ...] | None]:
        """(catalog, chip names in order, weight dtypes, KV dtypes), validated."""
        catalog = self.catalog if self.catalog is not None else load_chips()
        names = list(dict.fromkeys(self.chips)) if self.chips else sorted(catalog)
        for n in names:
            check_priced(lookup_chip(catalog, n))
        if not names:
            raise InputError("no chip in the catalog has a price: give one with --price CHIP=USD")
        return catalog, names, _dtypes("weights", self.weights), _dtypes("kv", self.kv)


def _unsupported_dtypes(
    catalog: dict[str, Chip], names: list[str], weights: tuple[str, ...] | None, kv: tuple[str, ...] | None
) -> dict[str, str]:
    """Chips that support none of the asked weight (or KV) dtypes, and why."""
    out: dict[str, str] = {}
    for n in names:
        chip = catalog[n]
        for kind, asked, options in (("weights", weights, chip.weight_dtypes), ("kv", kv, chip.kv_dtypes)):
            if asked and not set(asked) & set(options):
                out[n] = (
                    f"supports none of the requested {kind} dtypes ({', '.join(asked)}); it has {', '.join(options)}"
                )
    if out and len(out) == len(names):
        first = next(iter(out))
        raise InputError(f"{first} {out[first]}")
    return out


def _check_optimize_args(workload: Workload, objective: str, top: int, qps: float | None, time_limit_s: float) -> None:
    if not isinstance(workload, Workload):
        raise InputError(f"workload must be a Workload, got {workload!r}")
    if workload.slo_ms is None:
        raise InputError("slo_ms is required (the workload's per-token latency target)")
    if qps is not None:
        check_positive_number("qps (--qps) of queries per second", qps)
        if qps > MAX_QPS:
            raise InputError(
                f"qps (--qps) {qps:g} is above {MAX_QPS:g} queries per second, beyond what the demand "
                "model's integers represent exactly"
            )
    check_choice("objective", objective, list(OBJECTIVES))
    check_positive_int("top", top)
    check_positive_number("time_limit_s (--time-limit)", time_limit_s)


def _notes(workload: Workload, profile: Profile, table: CandidateTable) -> list[str]:
    notes = []
    if workload.serving != "decode-only":
        notes.append("TTFT is one prompt's prefill time; queueing for a prefill server is ignored")
        if workload.prompt_tokens + workload.decode_len > workload.context:
            notes.append(
                f"prompt ({workload.prompt_tokens}) + decode ({workload.decode_len}) tokens exceed the "
                f"context ({workload.context}); KV caches are sized for the context, as in the chapter"
            )
    return notes + profile.notes(workload.serving != "decode-only", {str(c) for c in table.chip.tolist()})


def optimize(
    model: Model | str | Path,
    workload: Workload,
    *,
    profile: Profile = DEFAULT_PROFILE,
    search: Search = Search(),
    objective: str = "queries-per-dollar",
    top: int = 3,
    qps: float | None = None,
    compare_colocated: bool = False,
    time_limit_s: float = 5.0,
    alternatives: bool = True,
) -> OptimizeResult:
    """The configuration with the best `objective` whose decode step stays within the
    workload's `slo_ms` (and TTFT within `ttft_ms`, prompts served as `workload.serving` says).

    top: how many configurations to rank (the winner and top-1 runners-up);
    qps: also size the cheapest whole deployment for this demand (queries per second), within
    `time_limit_s` deterministic seconds; compare_colocated: also solve the other of
    disaggregated/co-located and compare; alternatives: also find the best configuration of
    every other chip type (one solve each).
    Raises InputError (a ValueError) for bad input; an unreachable target is a result with
    status "infeasible" and a reason.
    """
    started = time.perf_counter()
    _check_optimize_args(workload, objective, top, qps, time_limit_s)
    mdl = _resolve_model(model)
    catalog, names, weights, kv = search.resolve()
    unserved = _unsupported_dtypes(catalog, names, weights, kv)
    table = build_table(mdl, {n: catalog[n] for n in names}, workload, profile, weights, kv, search.max_nodes)
    if profile.engine_name is not None:
        present = set(table.chip.tolist())
        for n in names:
            if n not in present and n not in unserved:
                unserved[n] = engine_refusal(profile.engine_name, catalog[n])
    sm = ServingModel(table, workload, objective, keep_best=top)
    status, choice = sm.solve()

    def config(c: Any) -> Configuration:
        return configuration(table, c, workload, profile, sm.caps, objective)

    best = config(choice) if choice else None
    runners: list[Configuration] = []
    alts: list[Configuration] = []
    reason = infeasible_reason(sm.table, sm.caps, workload) if choice is None else None
    taken = [choice.row] if choice is not None else []
    while choice is not None and len(runners) < top - 1:
        _, nxt = sm.solve(exclude=tuple(taken))
        if nxt is None:
            break
        taken.append(nxt.row)
        runners.append(config(nxt))
    for n in names if alternatives else []:
        if n in unserved or (choice is not None and table.chip[choice.row] == n):
            continue
        _, alt = sm.solve(chip=n)
        if alt is None:
            unserved[n] = infeasible_reason(sm.table, sm.caps, workload, table.chip == n)
        elif choice is not None:
            alts.append(config(alt))
    demand = deployment(sm, workload, qps, time_limit_s) if qps is not None else None
    comparison = None
    if compare_colocated and workload.serving != "decode-only":
        other_mode = "colocated" if workload.prefill_servers else "disaggregated"
        other = optimize(
            mdl,
            replace(workload, serving=other_mode),
            profile=profile,
            search=Search(catalog, names, search.weights, search.kv, search.max_nodes),
            objective=objective,
            top=1,
            qps=qps,
            time_limit_s=time_limit_s,
            alternatives=False,
        )
        comparison = _compare({workload.serving: (best, demand), other_mode: (other.best, other.deployment)})
    return OptimizeResult(
        status=status,
        reason=reason,
        model=mdl.name,
        objective=objective,
        context=workload.context,
        decode_len=workload.decode_len,
        slo_ms=workload.slo_ms,
        best=best,
        runners_up=runners,
        alternatives=alts,
        unserved=unserved,
        solve=SolveStats(
            seconds=time.perf_counter() - started,
            candidates=len(table),
            feasible_candidates=len(sm.feasible_rows),
            solver_status=status,
            solves=sm.solves,
        ),
        serving=workload.serving,
        prompt_len=None if workload.serving == "decode-only" else workload.prompt_tokens,
        ttft_target_ms=workload.ttft_ms,
        deployment=demand,
        comparison=comparison,
        notes=_notes(workload, profile, table)
        + _within_band(best, runners, profile)
        + profile.extrapolated(*(c.batch for c in [best, *runners] if c is not None)),
        profile=profile.name,
        uncertainty=profile.uncertainty(),
        assumed=profile.assumed(_answer_chips([best, *runners, *alts])),
    )


def _answer_chips(configs: list[Configuration | None]) -> set[str]:
    """The chips an answer's decode replicas and prefill servers run on."""
    chips = {c.chip for c in configs if c is not None}
    return chips | {c.prefill.chip for c in configs if c is not None and c.prefill is not None}


def _within_band(best: Configuration | None, runners: list[Configuration], profile: Profile) -> list[str]:
    """Say when the winner and the runner-up are closer than the prediction band."""
    band = profile.uncertainty()
    if band is None or best is None or not runners:
        return []
    gap = abs(best.queries_per_dollar / runners[0].queries_per_dollar - 1.0) * 100.0
    if gap >= band["step_pct"]:
        return []
    return [
        f"the winner and the runner-up are {gap:.1f}% apart in queries per dollar, within the "
        f"calibrated band of ±{band['step_pct']:.0f}%: either may be the cheaper in practice"
    ]


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
    workload: Workload,
    *,
    profile: Profile = DEFAULT_PROFILE,
    chip: str,
    topology: str,
    weights: str,
    kv: str,
    batch: int,
    tp: int | None = None,
    chips: dict[str, Chip] | None = None,
    attention_dp: int = 1,
    ep: int = 1,
    pp: int | None = None,
) -> Evaluation:
    """The roofline (book or calibrated profile) of one fixed configuration at the workload's
    context, whether or not it fits; the prefill figures are for a prefill server of this same
    configuration (tp None: model parallel over every chip of the slice; chips: the catalog).
    A GPU topology of several nodes ("16": two 8-GPU nodes) is one replica over all of them:
    pp None is one pipeline stage per node, or one stage when `ep` spreads the experts past a
    node (optimizer.multinode)."""
    mdl = _resolve_model(model)
    workload = replace(workload, serving="decode-only")
    catalog = chips if chips is not None else load_chips()
    check_priced(lookup_chip(catalog, chip))
    _dtypes("weights", (weights,))
    _dtypes("kv", (kv,))
    check_positive_int("batch", batch)
    if tp is not None:
        check_positive_int("tp", tp)
    check_positive_int("attention_dp", attention_dp)
    check_positive_int("ep", ep)
    if pp is not None:
        check_positive_int("pp", pp)
    profile.check_runs(mdl, catalog[chip], weights, kv)
    table = single_candidate(mdl, catalog[chip], topology, tp, weights, kv, workload, profile, attention_dp, ep, pp)
    c = table.cost
    rows = np.array([0])
    batches = np.array([batch])
    m = measure(table, rows, batches, workload.decode_len)
    kv_bytes = float(c.kv_bytes_per_seq[0] * batch)
    return Evaluation(
        model=mdl.name,
        **table.row(0),
        batch=batch,
        context=workload.context,
        decode_len=workload.decode_len,
        param_count=mdl.param_count,
        param_bytes=float(c.weight_bytes[0]),
        kv_bytes_per_token=float(c.kv_bytes_per_token[0]),
        kv_bytes_per_sequence=float(mdl.kv_bytes_per_sequence(workload.context, kv)),
        kv_bytes=kv_bytes,
        hbm_bytes=float(c.hbm_capacity_bytes[0]),
        hbm_free_bytes=float(c.hbm_capacity_bytes[0] - c.weight_bytes[0]),
        hbm_used_bytes=float(c.weight_bytes[0]) + kv_bytes,
        fits=bool(hbm.satisfied(table, rows, batches, workload)[0]),
        max_batch=max(int(c.max_batch_hbm()[0]), 0),
        step_ms=float(m.step_s[0] * 1e3),
        breakdown_ms=profile.breakdown_ms(c, 0, batch),
        critical_batch=profile.critical_batch(c, 0),
        comms_bound=bool(comms.comms_bound(table, rows, batches)[0]),
        tokens_per_s=float(m.tokens_per_s_per_chip[0] * table.slice_chips[0]),
        tokens_per_s_per_chip=float(m.tokens_per_s_per_chip[0]),
        qps_per_chip=float(m.qps_per_chip[0]),
        queries_per_dollar=float(m.queries_per_dollar[0]),
        usd_per_million_tokens=float(m.usd_per_million_tokens[0]),
        cost_per_hour=float(table.slice_chips[0] * table.usd_per_chip_hour[0]),
        prompt_len=workload.prompt_tokens,
        prefill_mfu=profile.prefill_mfu if isinstance(profile, Book) else None,
        prefill_ms=float(c.prefill_s[0] * 1e3),
        prompt_fits=bool(prefill.prompt_fits(table, rows)[0]),
        uncertainty=profile.uncertainty(),
        assumed=profile.assumed([str(table.chip[0])]),
        notes=profile.extrapolated(batch),
        prefill_servers_per_replica=prefill_servers_per_replica(
            batch=batch,
            step_s=float(m.step_s[0]),
            decode_len=workload.decode_len,
            prefill_seconds=float(c.prefill_s[0]),
        ),
        profile=profile.name,
    )
