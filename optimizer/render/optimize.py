"""The text of optimize and evaluate: the chosen configuration, its prefill, a deployment,
a comparison; one fixed configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optimizer.render.text import plural, table

if TYPE_CHECKING:
    from optimizer.result import Configuration, Deployment, Evaluation, OptimizeResult


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


def split_suffix(pp: int, attention_dp: int, ep: int) -> str:
    """The tp/axes column's split of a replica, e.g. " dp8 ep8": pipeline stages, attention
    data-parallel groups and expert parallelism, each only when above 1 (a dense one-node
    replica's column is unchanged)."""
    return "".join(f" {name}{value}" for name, value in (("pp", pp), ("dp", attention_dp), ("ep", ep)) if value > 1)


def layout_words(c: Any) -> str:
    """A replica's layout in words (optimizer.multinode.describe), e.g. "attention data parallel
    8, experts over 8"; "" for a replica on one node that splits nothing."""
    if c.nodes <= 1 and c.pp <= 1 and c.attention_dp <= 1 and c.ep <= 1:
        return ""
    from optimizer.multinode import describe  # numpy and the cost model: only when a layout is shown

    return describe(c.nodes, c.pp, c.tp, c.attention_dp, c.ep)


def configuration_row(label: str, c: Configuration) -> list[str]:
    """One row of optimize's table."""
    return [
        label,
        c.chip,
        c.topology,
        str(c.chips),
        f"{c.tp}/{c.n_axes}{split_suffix(c.pp, c.attention_dp, c.ep)}",
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
        layout = layout_words(p)
        lines.append(
            f"\nPrefill servers: {p.chip} {p.topology}, {p.tp}-way model parallel{f' ({layout})' if layout else ''}, "
            f"{p.prefill_ms:.1f} ms "
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


def _layout_lines(b: Configuration) -> list[str]:
    """How the best configuration's replica is split (pp/dp/ep in the table), in words; none for
    a replica on one node that splits nothing."""
    layout = layout_words(b)
    return [f"\nLayout: each replica of {b.tp} {b.chip} chips: {layout}"] if layout else []


def _best_lines(r: OptimizeResult, b: Configuration) -> list[str]:
    """The status with the solve's size, the ranked table, prefill and cost, notes and why."""
    rows = [configuration_row("best", b)]
    rows += [configuration_row(f"#{k + 2}", c) for k, c in enumerate(r.runners_up)]
    rows += [configuration_row("alt", c) for c in r.alternatives]
    return [
        f"status: {r.status} ({r.solve.candidates} candidates, "
        f"{r.solve.feasible_candidates} can serve; {r.solve.seconds * 1e3:.0f} ms)\n",
        table(CONFIGURATION_HEADERS, rows),
        *_layout_lines(b),
        *_prefill_lines(r, b),
        *(f"Note: {note}" for note in r.notes),
        *_band_lines(r.uncertainty, b.step_ms, b.ttft_ms),
        f"\nWhy: {b.explanation} ({r.profile} profile).",
    ]


def _band_lines(band: dict[str, float] | None, step_ms: float, ttft_ms: float | None) -> list[str]:
    """The calibrated prediction band, on the winner's figures."""
    if band is None:
        return []
    ttft = f", TTFT {ttft_ms:.1f} ms ±{band['ttft_pct']:.0f}%" if ttft_ms is not None else ""
    return [
        f"Band: step {step_ms:.2f} ms ±{band['step_pct']:.0f}%{ttft}; queries per dollar and cost per "
        f"token carry the step's band (leave-one-model-out error of the calibrated fit)"
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
    verdict = f"cheaper: {c['cheaper']}" if c["cheaper"] is not None else "neither mode can serve it"
    return f"\nCompared ({c['by']}): {'; '.join(parts)}; {verdict}"


def optimum_label(b: Configuration) -> str:
    """optimize --plot: the label of the chosen configuration's marker."""
    return f"chosen: {b.chip} {b.topology} {b.weights}/{b.kv} batch {b.batch}"


def optimum_plot_title(r: OptimizeResult) -> str:
    return f"{r.model}: decode latency-cost frontier and the chosen configuration"


def evaluation(e: Evaluation) -> str:
    """evaluate's report: the layout, HBM, the decode step and its parts, throughput, cost, prefill."""
    b = e.breakdown_ms
    book = e.profile == "book"
    layout = layout_words(e)
    parallel = (
        f"{e.tp}-way model parallel over {e.n_axes} {'axis' if e.n_axes == 1 else 'axes'}"
        f"{f' ({layout})' if layout else ''}, "
    )
    # a mixture of experts reads the experts its batch touches; a pipeline pays its stage boundaries
    experts = f" + experts {b['experts']:.3f}" if "experts" in b else ""
    boundaries = f" + stage boundaries {b['pipeline']:.3f}" if "pipeline" in b else ""
    step = (
        f"decode step      {e.step_ms:.3f} ms = KV {b['kv']:.3f} + max(FLOPs {b['flops']:.3f}, "
        f"params {b['params']:.3f}{experts}){boundaries}"
        if book
        else f"decode step      {e.step_ms:.3f} ms = overheads and collectives {b['overheads_and_collectives']:.3f} + "
        f"max(FLOPs {b['flops']:.3f}, params {b['params']:.3f}{experts} + KV {b['kv']:.3f}){boundaries} "
        "(calibrated profile" + (f"; ±{e.uncertainty['step_pct']:.0f}%)" if e.uncertainty else ")")
    )
    lines = [
        f"{e.model} on {e.chip} {e.topology}: "
        + (parallel if e.tp > 1 else "no model parallelism, ")
        + f"{e.replicas} {plural(e.replicas, 'replica')}; {e.weights} weights, {e.kv} KV; "
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
    lines += [f"assumed          {a}" for a in e.assumed]
    lines += [f"note             {n}" for n in e.notes]
    if not e.fits:
        lines.insert(2, "                 (does not fit: the figures below are what the roofline would give if it did)")
    return "\n".join(lines)
