"""The text the command line prints: pure functions from result objects to strings.

One function per result type (and per message a command prints); no click, no printing, no
I/O, so each can be tested on its own and the command line only parses, calls and echoes.
JSON output is the results' own to_dict() (or the listings built here), indented by two.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from optimizer import FleetPlan
    from optimizer.calibration import CalibratedParams, Measurements, Validation
    from optimizer.catalog import Chip, Model
    from optimizer.frontier import BatchPoint, FrontierPoint
    from optimizer.result import Configuration, Deployment, Evaluation, OptimizeResult


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell: the first and last left-aligned, the others right."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if k in (0, last) else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def json_text(data: Any) -> str:
    """What --json prints: the data indented by two."""
    return json.dumps(data, indent=2)


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


# ----------------------------------------------------------------------------- optimize

CONFIGURATION_HEADERS = [
    "",
    "chip",
    "slice",
    "chips",
    "tp/axes",
    "repl",
    "w/kv",
    "batch",
    "step ms",
    "queries/$",
    "$/Mtok",
    "$/hour",
    "binds",
]


def configuration_row(label: str, c: Configuration) -> list[str]:
    """One row of optimize's table."""
    return [
        label,
        c.chip,
        c.topology,
        str(c.chips),
        f"{c.tp}/{c.n_axes}",
        str(c.replicas),
        f"{c.weights}/{c.kv}",
        str(c.batch),
        f"{c.step_ms:.2f}",
        f"{c.queries_per_dollar:,.0f}",
        f"{c.usd_per_million_tokens:.3f}",
        f"{c.cost_per_hour:,.2f}",
        ",".join(c.binding) or "-",
    ]


def optimize_header(r: OptimizeResult) -> str:
    """What was asked: the model, objective, target, workload and profile."""
    ttft = f", TTFT <= {r.ttft_target_ms:g} ms" if r.ttft_target_ms else ""
    prompt = "" if r.serving == "decode-only" else f", {r.prompt_len}-token prompts ({r.serving}{ttft})"
    return (
        f"{r.model}: {r.objective}, decode step <= {r.slo_ms:g} ms, context {r.context}, "
        f"{r.decode_len} output tokens per query{prompt} ({r.profile} profile)"
    )


def _prefill_lines(r: OptimizeResult, b: Configuration) -> list[str]:
    """How prompts are served and what the tokens cost, under the table."""
    lines = []
    if b.prefill is not None:
        p = b.prefill
        lines.append(
            f"\nPrefill servers: {p.chip} {p.topology}, {p.tp}-way model parallel, {p.prefill_ms:.1f} ms "
            f"per {r.prompt_len}-token prompt; {b.prefill_servers_per_replica:.3f} per decode replica "
            f"(about {b.prefill_ratio} prefill:decode); TTFT {b.ttft_ms:.1f} ms"
        )
    elif b.ttft_ms is not None:
        lines.append(f"\nCo-located prefill: {b.breakdown_ms['prefill']:.2f} ms of each step; TTFT {b.ttft_ms:.1f} ms")
    if b.usd_per_million_input_tokens is not None:
        share = (
            f"with prefill ({b.decode_queries_per_dollar:,.1f} decode alone)"
            if b.prefill is not None
            else "with prefill inside the decode step"
        )
        lines.append(
            f"Cost: {b.queries_per_dollar:,.1f} queries/$ {share}; "
            f"${b.usd_per_million_input_tokens:.4f} per million input tokens, "
            f"${b.usd_per_million_output_tokens:.4f} per million output tokens"
        )
    return lines


def _best_lines(r: OptimizeResult, b: Configuration) -> list[str]:
    """The status with the solve's size, the ranked table, prefill and cost, notes and why."""
    rows = [configuration_row("best", b)]
    rows += [configuration_row(f"#{k + 2}", c) for k, c in enumerate(r.runners_up)]
    rows += [configuration_row("alt", c) for c in r.alternatives]
    return [
        f"status: {r.status} ({r.solve.candidates} candidates, "
        f"{r.solve.feasible_candidates} can serve; {r.solve.seconds * 1e3:.0f} ms)\n",
        table(CONFIGURATION_HEADERS, rows),
        *_prefill_lines(r, b),
        *(f"Note: {note}" for note in r.notes),
        f"\nWhy: {b.explanation} ({r.profile} profile).",
    ]


def optimize_result(r: OptimizeResult) -> str:
    """optimize's report: the header, the answer (or why there is none), the chips that cannot
    serve, and the deployment and the comparison when they were asked for."""
    lines = [optimize_header(r)]
    if r.best is None:
        lines.append(f"status: {r.status}: {r.reason}")
    else:
        lines += _best_lines(r, r.best)
    lines += [f"not served by {chip}: {why}" for chip, why in r.unserved.items()]
    if r.deployment is not None:
        lines.append(deployment(r.deployment))
    if r.comparison is not None:
        lines.append(comparison(r.comparison))
    return "\n".join(lines)


def deployment(d: Deployment) -> str:
    """The demand-sized deployment: its status, slices per role, chips, cost and headroom."""
    head = f"\nDeployment for {d.qps:g} queries/s: {d.status}" + (
        f" (within {d.gap:.3%} of the proven bound)" if d.status == "feasible" else ""
    )
    if not d.decode:
        return f"{head}\n  no deployment: {d.reason}"
    rows = [
        [
            e.role,
            e.chip,
            e.topology,
            str(e.slices),
            str(e.replicas or e.servers),
            f"{e.weights}/{e.kv}",
            str(e.batch) if e.batch else "-",
            f"{e.qps_per_slice:,.2f}",
            f"{e.cost_per_hour:,.2f}",
        ]
        for e in d.decode + d.prefill
    ]
    headers = ["role", "chip", "slice", "slices", "replicas/servers", "w/kv", "batch", "qps/slice", "$/hour"]
    return "\n".join(
        [
            head,
            table(headers, rows),
            f"  {d.total_chips} chips, ${d.cost_per_hour:,.2f}/hour, ${d.cost_per_month:,.0f}/month (730 h); "
            f"serves {d.qps_capacity:,.2f} queries/s, headroom {d.headroom_qps:,.2f} ({d.headroom_pct:.1f}%)",
        ]
    )


def comparison(c: dict[str, Any]) -> str:
    """--compare-colocated: each serving mode's queries per dollar (and cost), and the cheaper."""
    parts = [
        (
            f"{m}: {v['queries_per_dollar']:,.1f} queries/$"
            + (f", ${v['cost_per_hour']:,.2f}/hour" if v["cost_per_hour"] is not None else "")
        )
        if v["queries_per_dollar"]
        else f"{m}: infeasible"
        for m, v in c.items()
        if isinstance(v, dict)
    ]
    return f"\nCompared ({c['by']}): {'; '.join(parts)}; cheaper: {c['cheaper']}"


def optimum_label(b: Configuration) -> str:
    """optimize --plot: the label of the chosen configuration's marker."""
    return f"chosen: {b.chip} {b.topology} {b.weights}/{b.kv} batch {b.batch}"


def optimum_plot_title(r: OptimizeResult) -> str:
    return f"{r.model}: decode latency-cost frontier and the chosen configuration"


# ----------------------------------------------------------------------------- evaluate


def evaluation(e: Evaluation) -> str:
    """evaluate's report: the layout, HBM, the decode step and its parts, throughput, cost, prefill."""
    b = e.breakdown_ms
    book = e.profile == "book"
    parallel = f"{e.tp}-way model parallel over {e.n_axes} {'axis' if e.n_axes == 1 else 'axes'}, "
    step = (
        f"decode step      {e.step_ms:.3f} ms = KV {b['kv']:.3f} + max(FLOPs {b['flops']:.3f}, "
        f"params {b['params']:.3f})"
        if book
        else f"decode step      {e.step_ms:.3f} ms = overheads and collectives {b['overheads_and_collectives']:.3f} + "
        f"max(FLOPs {b['flops']:.3f}, params {b['params']:.3f} + KV {b['kv']:.3f}) (calibrated profile)"
    )
    lines = [
        f"{e.model} on {e.chip} {e.topology}: "
        + (parallel if e.tp > 1 else "no model parallelism, ")
        + f"{e.replicas} {_plural(e.replicas, 'replica')}; {e.weights} weights, {e.kv} KV; "
        f"batch {e.batch}, context {e.context}",
        f"HBM per replica  {e.hbm_bytes / 1e9:.1f} GB: weights {e.param_bytes / 1e9:.2f} GB, KV "
        f"{e.kv_bytes / 1e9:.2f} GB ({e.kv_bytes_per_token:,.0f} B/token); fits: {'yes' if e.fits else 'NO'}; "
        f"max batch {e.max_batch}",
        step,
        f"critical batch   {'never' if e.critical_batch is None else f'{e.critical_batch:.1f}'}; "
        f"comms-bound: {'yes' if e.comms_bound else 'no'}",
        f"throughput       {e.tokens_per_s:,.0f} tokens/s ({e.tokens_per_s_per_chip:,.1f} per chip), "
        f"{e.qps_per_chip:.4f} queries/s per chip",
        f"cost             ${e.cost_per_hour:,.2f}/hour, {e.queries_per_dollar:,.1f} queries/$, "
        f"${e.usd_per_million_tokens:.3f} per million output tokens",
        f"prefill          {e.prefill_ms:,.1f} ms per {e.prompt_len}-token prompt "
        + (f"at {e.prefill_mfu:g} MFU" if book else "at the calibrated rate")
        + f"{'' if e.prompt_fits else ' (the prompt does not fit)'}; {e.prefill_servers_per_replica:.3f} prefill "
        f"servers of this configuration per decode replica",
    ]
    if not e.fits:
        lines.insert(2, "                 (does not fit: the figures below are what the roofline would give if it did)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- frontier and by-batch


def frontier_points(points: Sequence[FrontierPoint]) -> str:
    """The frontier's points as a table, fastest first per context."""
    return table(
        ["context", "chip", "slice", "tp", "w/kv", "batch", "step ms", "$/Mtok out"],
        [
            [
                str(p.context),
                p.chip,
                p.topology,
                str(p.tp),
                f"{p.weights}/{p.kv}",
                str(p.batch),
                f"{p.step_ms:.3f}",
                f"{p.usd_per_million_tokens:.4f}",
            ]
            for p in points
        ],
    )


def batch_points(points: Sequence[BatchPoint]) -> str:
    """The by-batch view as a table: the step and its parts, throughput per chip, what bounds it."""
    return table(
        ["context", "batch", "step ms", "params", "kv", "flops", "tok/ms/chip", "bound"],
        [
            [
                str(p.context),
                str(p.batch),
                f"{p.step_ms:.3f}",
                f"{p.params_ms:.3f}",
                f"{p.kv_ms:.3f}",
                f"{p.flops_ms:.3f}",
                f"{p.tokens_per_ms_per_chip:.4f}",
                ("compute" if p.compute_bound else "memory") + (", comms" if p.comms_bound else ""),
            ]
            for p in points
        ],
    )


def points_json(points: Sequence[FrontierPoint] | Sequence[BatchPoint]) -> str:
    """frontier --json."""
    return json_text({"points": [p.to_dict() for p in points]})


def points_file(points: Sequence[FrontierPoint] | Sequence[BatchPoint], suffix: str) -> str:
    """frontier --out: the points as a JSON list (suffix .json) or CSV with a header row (else).
    The CSV lines end in CRLF (the csv module's dialect): write the text with newline=""."""
    rows = [p.to_dict() for p in points]
    if suffix.lower() == ".json":
        return json.dumps(rows, indent=2)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["context"])
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def wrote(path: str, n: int) -> str:
    return f"wrote {path} ({n} points)"


def no_frontier(model: str, contexts: Sequence[int]) -> str:
    """The frontier is empty: the model fits on none of the chips."""
    return (
        f"nothing to show: {model} fits on none of the chips asked with one sequence of "
        f"{', '.join(map(str, contexts))} tokens"
    )


def no_batches(model: str, chip: str, topology: str, weights: str, kv: str, contexts: Sequence[int]) -> str:
    """The by-batch view is empty: the configuration holds not even one sequence."""
    return (
        f"nothing to show: {model} does not fit on {chip} {topology} in "
        f"{weights}/{kv} with one sequence of any of the contexts asked "
        f"({', '.join(map(str, contexts))} tokens)"
    )


def none_within(slo_ms: float, context: int) -> str:
    return f"no configuration meets {slo_ms:g} ms at {context:,} tokens"


def cheapest_label(p: FrontierPoint, slo_ms: float) -> str:
    """frontier --slo-ms: the label of the cheapest point within the target."""
    return (
        f"cheapest within {slo_ms:g} ms at {p.context:,} "
        f"tokens: {p.chip} {p.topology} {p.weights}/{p.kv} batch {p.batch}"
    )


def frontier_title(model: str, profile: str, decode_len: int) -> str:
    return f"{model}: latency-cost frontier of decode ({profile} profile, {decode_len} output tokens per query)"


def by_batch_title(model: str, chip: str, topology: str, weights: str, kv: str, tp: int, profile: str) -> str:
    return (
        f"{model} on {chip} {topology} ({tp}-way model parallel), {weights} weights, "
        f"{kv} KV: decode step and throughput per chip against batch ({profile} profile)"
    )


# ----------------------------------------------------------------------------- zoo


def zoo_solved(solved: int, already: int, total: int, out: str) -> str:
    return f"{solved} scenarios solved, {already} already in {out}; {total} in the zoo"


def zoo_summary(rows: Sequence[dict[str, Any]]) -> str:
    """Per model: the best chip and its $/million tokens over its scenarios, and the failures."""
    lines = []
    for model in dict.fromkeys(str(r["model"]) for r in rows):
        mine = [r for r in rows if str(r["model"]) == model]
        solved = [r for r in mine if r["queries_per_dollar"] is not None]
        best = max(solved, key=lambda r: r["queries_per_dollar"]) if solved else None
        lines.append(
            [
                model,
                str(len(mine)),
                best["chip"] if best else "-",
                f"{best['usd_per_million_tokens']:.3f}" if best else "-",
                str(sum(r["status"] == "infeasible" for r in mine)),
                str(sum(r["status"] == "error" for r in mine)),
            ]
        )
    if not lines:
        return "nothing new to solve"
    return table(["model", "scenarios", "best chip", "best $/Mtok", "infeasible", "errors"], lines)


# ----------------------------------------------------------------------------- models and chips


def model_listing(models: dict[str, Model]) -> list[dict[str, Any]]:
    """Each model's shape, parameter count, KV bytes per token per dtype and source."""
    return [
        {
            "name": name,
            "param_count": m.param_count,
            "layers": m.num_layers,
            "d_model": m.d_model,
            "d_ff": m.d_ff,
            "heads": m.num_heads,
            "kv_heads": m.num_kv_heads,
            "head_dim": m.head_dim,
            "vocab": m.vocab,
            "kv_bytes_per_token": {d: m.kv_bytes_per_token(d) for d in ("bf16", "int8", "int4")},
            "source": m.source,
        }
        for name, m in models.items()
    ]


def models_json(models: dict[str, Model]) -> str:
    return json_text({"models": model_listing(models)})


def models_table(models: dict[str, Model]) -> str:
    return table(
        ["model", "params", "layers", "kv heads", "KV B/token bf16", "int8", "int4"],
        [
            [
                r["name"],
                f"{r['param_count'] / 1e9:.2f}B",
                str(r["layers"]),
                str(r["kv_heads"]),
                f"{r['kv_bytes_per_token']['bf16']:,.0f}",
                f"{r['kv_bytes_per_token']['int8']:,.0f}",
                f"{r['kv_bytes_per_token']['int4']:,.0f}",
            ]
            for r in model_listing(models)
        ],
    )


def chips_json(catalog: dict[str, Chip]) -> str:
    return json_text(
        {"chips": [{**asdict(c), "ici_bytes_per_s_per_axis": c.ici_bytes_per_s_per_axis} for c in catalog.values()]}
    )


def chips_table(catalog: dict[str, Chip]) -> str:
    return table(
        ["chip", "bf16 TFLOP/s", "HBM GB", "HBM GB/s", "ICI GB/s/axis", "$/chip-h", "slices"],
        [
            [
                c.name,
                f"{c.bf16_flops / 1e12:,.0f}",
                f"{c.hbm_bytes / 1e9:,.0f}",
                f"{c.hbm_bytes_per_s / 1e9:,.0f}",
                f"{c.ici_bytes_per_s_per_axis / 1e9:,.0f}",
                f"{c.usd_per_chip_hour:.2f}",
                " ".join(c.topologies),
            ]
            for c in catalog.values()
        ],
    )


# ----------------------------------------------------------------------------- plan


def plan_entry(e: Any) -> str:
    """One deployment entry: slices x [prefill] pool shape, tp, weights/kv, batch."""
    role = "" if e.role == "decode" else "prefill "
    extra = f" B{e.batch}" if e.batch is not None else ""
    return f"{e.slices}x {role}{e.pool} {e.topology} tp{e.tp} {e.weights}/{e.kv}{extra}"


def _plan_head(r: FleetPlan, plan_file: str) -> list[str]:
    name = r.period_name
    periods = f"{r.periods} {name}{'s' if r.periods != 1 else ''}"
    gap = f", gap {100 * r.gap:.2f}%" if r.gap is not None else ""
    objective = ", most demand served" if r.objective == "max-served" else ""
    lines = [
        f"plan {plan_file}: {periods}, {r.profile} profile, "
        f"status {r.status}{gap}{objective}, solved in {r.solve.seconds:.2f} s ({r.solve.offers} offers after "
        f"pruning {r.solve.offers_before_pruning})"
    ]
    if r.reason:
        lines.append(f"reason: {r.reason}")
    if r.total_cost_usd is not None:
        served = (
            f"; serves {r.served_qps:,.1f} of {r.required_qps:,.1f} required queries/s summed over {name}s"
            if r.served_qps is not None
            else ""
        )
        lines.append(
            f"total ${r.total_cost_usd:,.0f} over {periods} "
            f"(commitments {r.commitment_accounting}; headroom {100 * r.headroom:.0f}%){served}\n"
        )
    return lines


def _plan_costs(r: FleetPlan) -> str:
    budgets = any(c.budget_usd is not None for c in r.costs)
    return table(
        [r.period_name, "on demand $", "committed $", "total $"] + (["budget $"] if budgets else []),
        [
            [str(c.period), f"{c.on_demand_usd:,.0f}", f"{c.committed_usd:,.0f}", f"{c.total_usd:,.0f}"]
            + ([f"{c.budget_usd:,.0f}"] if budgets else [])
            for c in r.costs
        ],
    )


def _plan_bill(r: FleetPlan) -> str:
    return table(
        [r.period_name, "pool", "quota", "used", "committed", "on demand", "$", "slices"],
        [
            [
                str(b.period),
                b.pool,
                str(b.quota),
                str(b.used),
                " ".join(f"{k}:{v}" for k, v in b.committed.items()) or "0",
                str(b.on_demand),
                f"{b.cost_usd:,.0f}",
                " ".join(f"{k}:{v}" for k, v in b.slices.items()) or "-",
            ]
            for b in r.bill
        ],
    )


def _plan_commitments(r: FleetPlan) -> str:
    name = r.period_name
    return table(
        ["pool", "tier", f"from {name}", "term", "chips", "off", "$ per " + name, "$ counted"],
        [
            [
                c.pool,
                c.tier,
                str(c.start_period),
                str(c.term_periods),
                str(c.chips),
                f"{c.discount:.0%}",
                f"{c.usd_per_period:,.0f}",
                f"{c.total_usd:,.0f}",
            ]
            for c in r.commitments
        ],
    )


def _plan_deployments(r: FleetPlan) -> str:
    return table(
        ["model", r.period_name, "forecast", "required", "capacity", "util", "headroom", "chips", "slices"],
        [
            [
                m.model,
                str(m.period),
                f"{m.demand_qps:,.2f}",
                f"{m.required_qps:,.2f}",
                f"{m.capacity_qps:,.2f}",
                f"{100 * m.utilization:.0f}%",
                f"{m.headroom_pct:+.0f}%" if m.headroom_pct is not None else "-",
                str(m.chips),
                " + ".join(plan_entry(e) for e in m.entries) or "-",
            ]
            for m in r.models
        ],
    )


def fleet_plan(r: FleetPlan, plan_file: str) -> str:
    """plan's report: the header and total, cost per period, the bill of materials, the
    commitments, the deployments per model and period, and what binds."""
    lines = _plan_head(r, plan_file)
    if r.total_cost_usd is None:
        return "\n".join(lines)
    lines += [_plan_costs(r), "\nBill of materials (chips per pool; slices by shape)", _plan_bill(r)]
    if r.commitments:
        lines += ["\nCommitments", _plan_commitments(r)]
    lines += [
        "\nDeployments (decode replicas + prefill servers; slices x pool shape, tp, weights/kv)",
        _plan_deployments(r),
        "\nWhat binds",
        *(f"- {line}" for line in r.binding),
        *(f"- short: {line}" for line in r.shortfalls),
        *(f"note: {line}" for line in r.notes),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- calibration


def calibration(params: CalibratedParams, check: Validation, data: Path | str, m: Measurements, out: str) -> str:
    """calibrate's report: what was fitted to what, the parameters, the in-sample errors."""
    chips = table(
        ["chip", "HBM efficiency", "FLOP/s efficiency", "fitted"],
        [
            [n, f"{c.hbm_efficiency:.3f}", f"{c.flops_efficiency:.3f}", "no (assumed)" if c.assumed else "yes"]
            for n, c in sorted(params.chips.items())
        ],
    )
    engines = table(
        ["engine", "step overhead ms", "per-sequence us", "link efficiency", "admission steps"],
        [
            [
                n,
                f"{e.step_overhead_s * 1e3:.3f}",
                f"{e.seq_overhead_s * 1e6:.2f}",
                f"{e.link_efficiency:.3f}",
                f"{e.admission_steps:.1f}",
            ]
            for n, e in sorted(params.engines.items())
        ],
    )
    return "\n".join(
        [
            f"fitted to {len(m)} rows of {data} ({len(m.skipped)} skipped); written to {out}",
            f"collective latency  {params.collective_latency_s * 1e6:.2f} us per all-reduce stage",
            chips,
            engines,
            f"in-sample MAPE: TPOT {check.overall['tpot_mape']:.2f}%, TTFT {check.overall['ttft_mape']:.2f}%",
        ]
    )


def calibration_json(params: CalibratedParams, check: Validation, out: str) -> str:
    return json_text({"params": asdict(params), "in_sample": check.overall, "skipped": check.skipped, "out": out})


def _errors(s: dict[str, Any]) -> list[str]:
    """Rows, TPOT MAPE and TTFT MAPE of a validation summary."""
    return [str(s["n"]), f"{s['tpot_mape']:.1f}%", f"{s['ttft_mape']:.1f}%"]


def validation(v: Validation, data: str, m: Measurements) -> str:
    """validate's report: the errors per group and overall, leave-one-model-out, skipped lines."""
    summary = [[g["model"], g["system"], g["engine"], g["precision"], *_errors(g)] for g in v.groups]
    lines = [
        f"{v.profile} profile on {data}: {len(m)} rows, {len(m.skipped)} skipped",
        table(
            ["model", "system", "engine", "precision", "rows", "TPOT MAPE", "TTFT MAPE"],
            [*summary, ["all", "", "", "", *_errors(v.overall)]],
        ),
    ]
    if v.leave_one_model_out is not None:
        lines += [
            "\nLeave one model out (fit without it, predict it):",
            table(
                ["held out", "rows", "TPOT MAPE", "TTFT MAPE"],
                [[r["model"], *_errors(r)] for r in v.leave_one_model_out],
            ),
        ]
    lines += [f"skipped line {s['line']}: {s['reason']}" for s in v.skipped]
    return "\n".join(lines)
