"""servesat's command line: parse, call the optimizer library, print. No logic beyond that."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from optimizer.catalog import DTYPES, builtin_models, load_chips
from optimizer.errors import InputError
from optimizer.result import Configuration
from optimizer.workload import OBJECTIVES

# The solver (ortools, which imports pandas) loads inside the commands that solve, so that
# `servesat models`, `servesat chips` and --help start in a tenth of the time.

POSITIVE_INT = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)


class OneLineErrors:
    """Print every usage or input error as one line on stderr and exit 2, never a traceback."""

    def main(self, args: Any = None, prog_name: str | None = None, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(args, prog_name, **kwargs)  # type: ignore[misc]
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except InputError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class Group(OneLineErrors, click.Group):  # type: ignore[misc]
    pass


class Command(OneLineErrors, click.Command):  # type: ignore[misc]
    pass


def _prices(values: tuple[str, ...]) -> dict[str, float]:
    prices = {}
    for v in values:
        name, sep, usd = (part.strip() for part in v.partition("="))
        try:
            prices[name] = float(usd)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--price {v!r} is not CHIP=USD (for example tpu-v5e=1.2)")
    return prices


def _catalog(chips_file: str | None, prices: tuple[str, ...]):
    return load_chips(chips_file, _prices(prices))


def _emit_json(data: dict) -> None:
    click.echo(json.dumps(data, indent=2))


def _fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if k in (0, last) else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def _config_row(label: str, c: Configuration) -> list[str]:
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


HEADERS = [
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

chips_option = click.option(
    "--chips",
    "chips_file",
    type=click.Path(dir_okay=False),
    help="TOML chip catalog to add to (or replace) the built-in one.",
)


def prompt_options(f):
    f = click.option(
        "--prefill-mfu",
        type=click.FloatRange(min=0, max=1, min_open=True),
        default=0.4,
        show_default=True,
        help="Model FLOPs utilization of prefill.",
    )(f)
    return click.option(
        "--prompt-len",
        type=POSITIVE_INT,
        default=None,
        help="Prompt tokens per query (default: context - decode length).",
    )(f)


price_option = click.option(
    "--price", "prices", multiple=True, metavar="CHIP=USD", help="Override a chip's price per chip-hour (repeatable)."
)


def profile_options(f):
    """--profile, --engine, --calibration: which cost model the command runs on."""
    f = click.option(
        "--calibration",
        type=click.Path(dir_okay=False),
        default=None,
        help="Calibrated-profile parameter file (written by servesat calibrate; default built-in).",
    )(f)
    f = click.option(
        "--engine",
        default=None,
        help="Calibrated profile: serving engine whose fitted overheads apply (trtllm, vllm, sglang).",
    )(f)
    return click.option(
        "--profile",
        type=click.Choice(["book", "calibrated"]),
        default="book",
        show_default=True,
        help="Cost model: the chapter's roofline, or fitted to measured serving.",
    )(f)


@click.command("optimize", cls=Command)
@click.option("--model", required=True, help="Built-in model name or path to a config.json.")
@click.option("--slo-ms", type=POSITIVE_FLOAT, required=True, help="Per-token latency target (ms).")
@click.option("--chip", "chip_names", multiple=True, help="Chip type to consider (repeatable; default all).")
@click.option("--context", type=POSITIVE_INT, default=8192, show_default=True, help="KV length per sequence.")
@click.option("--decode-len", type=POSITIVE_INT, default=512, show_default=True, help="Output tokens per query.")
@click.option("--weights", multiple=True, help=f"Weight dtype ({', '.join(DTYPES)}; repeatable).")
@click.option("--kv", multiple=True, help=f"KV-cache dtype ({', '.join(DTYPES)}; repeatable).")
@click.option("--objective", default="queries-per-dollar", show_default=True, help=f"One of: {', '.join(OBJECTIVES)}.")
@click.option("--top", type=POSITIVE_INT, default=3, show_default=True, help="Configurations to rank.")
@prompt_options
@click.option(
    "--ttft-ms", type=POSITIVE_FLOAT, default=None, help="Time-to-first-token target: one prompt's prefill (ms)."
)
@click.option("--colocated", is_flag=True, help="Prefill on the decode replicas instead of prefill servers.")
@click.option("--decode-only", is_flag=True, help="Ignore prompts: the decode-only roofline of the chapter.")
@click.option(
    "--compare-colocated",
    is_flag=True,
    help="Also solve the other of disaggregated/co-located and say which is cheaper.",
)
@click.option(
    "--qps", type=POSITIVE_FLOAT, default=None, help="Demand (queries/s): size the cheapest whole deployment."
)
@click.option(
    "--time-limit",
    type=POSITIVE_FLOAT,
    default=5.0,
    show_default=True,
    help="Demand mode: solver budget in deterministic seconds.",
)
@click.option(
    "--plot",
    "plot_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Draw the decode frontier with the chosen configuration and the SLO (.png or .svg).",
)
@chips_option
@price_option
@profile_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def optimize_cmd(
    model: str,
    slo_ms: float,
    chip_names: tuple[str, ...],
    context: int,
    decode_len: int,
    weights: tuple[str, ...],
    kv: tuple[str, ...],
    objective: str,
    top: int,
    prompt_len: int | None,
    prefill_mfu: float,
    ttft_ms: float | None,
    colocated: bool,
    decode_only: bool,
    compare_colocated: bool,
    qps: float | None,
    time_limit: float,
    plot_path: str | None,
    chips_file: str | None,
    prices: tuple[str, ...],
    profile: str,
    engine: str | None,
    calibration: str | None,
    as_json: bool,
) -> None:
    """The configuration with the most queries per dollar whose every output token meets --slo-ms."""
    from optimizer.api import optimize

    if colocated and decode_only:
        raise click.UsageError("--colocated and --decode-only exclude each other")
    serving = "colocated" if colocated else "decode-only" if decode_only else "disaggregated"
    if compare_colocated and decode_only:
        raise click.UsageError("--compare-colocated compares prefill modes; it cannot go with --decode-only")
    if plot_path is not None:
        from pathlib import Path

        from optimizer.plots import PLOT_SUFFIXES, _pyplot

        if Path(plot_path).suffix.lower() not in PLOT_SUFFIXES:
            raise InputError(f"--plot {plot_path}: unknown suffix; valid: .png, .svg")
        folder = Path(plot_path).resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise InputError(f"--plot {plot_path}: cannot be written (no writable folder {folder})")
        _pyplot()  # fail before solving if matplotlib is missing
    catalog = _catalog(chips_file, prices)
    result = optimize(
        model,
        slo_ms,
        chips=catalog,
        chip_names=chip_names or None,
        context=context,
        decode_len=decode_len,
        weights=weights or None,
        kv=kv or None,
        objective=objective,
        top=top,
        prompt_len=prompt_len,
        prefill_mfu=prefill_mfu,
        ttft_ms=ttft_ms,
        serving=serving,
        qps=qps,
        compare_colocated=compare_colocated,
        time_limit_s=time_limit,
        profile=profile,
        engine=engine,
        calibration=calibration,
    )
    if plot_path is not None:
        _plot_optimum(result, catalog, plot_path, model, chip_names, context, decode_len, weights, kv, slo_ms)
    if as_json:
        _emit_json(result.to_dict())
        return
    prompt = (
        ""
        if serving == "decode-only"
        else f", {result.prompt_len}-token prompts ({serving}{f', TTFT <= {ttft_ms:g} ms' if ttft_ms else ''})"
    )
    head = (
        f"{result.model}: {result.objective}, decode step <= {slo_ms:g} ms, context {context}, "
        f"{decode_len} output tokens per query{prompt} ({profile} profile)"
    )
    click.echo(head)
    if result.best is None:
        click.echo(f"status: {result.status}: {result.reason}")
    else:
        click.echo(
            f"status: {result.status} ({result.solve.candidates} candidates, "
            f"{result.solve.feasible_candidates} can serve; {result.solve.seconds * 1e3:.0f} ms)\n"
        )
        rows = [_config_row("best", result.best)]
        rows += [_config_row(f"#{k + 2}", c) for k, c in enumerate(result.runners_up)]
        rows += [_config_row("alt", c) for c in result.alternatives]
        click.echo(_fmt_table(HEADERS, rows))
        b = result.best
        if b.prefill is not None:
            p = b.prefill
            click.echo(
                f"\nPrefill servers: {p.chip} {p.topology}, {p.tp}-way model parallel, {p.prefill_ms:.1f} ms "
                f"per {result.prompt_len}-token prompt; {b.prefill_servers_per_replica:.3f} per decode replica "
                f"(about {b.prefill_ratio} prefill:decode); TTFT {b.ttft_ms:.1f} ms"
            )
        elif b.ttft_ms is not None:
            click.echo(
                f"\nCo-located prefill: {b.breakdown_ms['prefill']:.2f} ms of each step; TTFT {b.ttft_ms:.1f} ms"
            )
        if b.usd_per_million_input_tokens is not None:
            share = (
                f"with prefill ({b.decode_queries_per_dollar:,.1f} decode alone)"
                if b.prefill is not None
                else "with prefill inside the decode step"
            )
            click.echo(
                f"Cost: {b.queries_per_dollar:,.1f} queries/$ {share}; "
                f"${b.usd_per_million_input_tokens:.4f} per million input tokens, "
                f"${b.usd_per_million_output_tokens:.4f} per million output tokens"
            )
        for note in result.notes:
            click.echo(f"Note: {note}")
        click.echo(f"\nWhy: {b.explanation} ({profile} profile).")
    for chip, why in result.unserved.items():
        click.echo(f"not served by {chip}: {why}")
    if result.deployment is not None:
        _echo_deployment(result.deployment)
    if result.comparison is not None:
        c = result.comparison
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
        click.echo(f"\nCompared ({c['by']}): {'; '.join(parts)}; cheaper: {c['cheaper']}")


def _plot_optimum(result, catalog, path, model, chip_names, context, decode_len, weights, kv, slo_ms) -> None:
    """The decode frontier for optimize's inputs, with the chosen replica and the SLO marked."""
    from optimizer import load_model
    from optimizer.frontier import frontier
    from optimizer.plots import plot_frontier

    selected = {n: catalog[n] for n in (chip_names or sorted(catalog))}
    points = frontier(load_model(model), selected, context, decode_len, tuple(weights) or None, tuple(kv) or None)
    b = result.best
    chosen = []
    if b is not None:
        chosen.append(
            (
                b.step_ms,
                b.usd_per_million_output_tokens,
                f"chosen: {b.chip} {b.topology} {b.weights}/{b.kv} batch {b.batch}",
            )
        )
    plot_frontier(
        points,
        path,
        f"{result.model}: decode latency-cost frontier and the chosen configuration",
        chosen=chosen,
        slo_ms=slo_ms,
    )


def _echo_deployment(d) -> None:
    click.echo(
        f"\nDeployment for {d.qps:g} queries/s: {d.status}"
        + (f" (within {d.gap:.3%} of the proven bound)" if d.status == "feasible" else "")
    )
    if not d.decode:
        click.echo(f"  no deployment: {d.reason}")
        return
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
    click.echo(
        _fmt_table(
            ["role", "chip", "slice", "slices", "replicas/servers", "w/kv", "batch", "qps/slice", "$/hour"], rows
        )
    )
    click.echo(
        f"  {d.total_chips} chips, ${d.cost_per_hour:,.2f}/hour, ${d.cost_per_month:,.0f}/month (730 h); "
        f"serves {d.qps_capacity:,.2f} queries/s, headroom {d.headroom_qps:,.2f} ({d.headroom_pct:.1f}%)"
    )


@click.group(cls=Group)
def main() -> None:
    """servesat: choose how to serve an LLM (chip, slice, sharding, dtypes, batch), proven optimal."""


main.add_command(optimize_cmd)


@main.command("evaluate")
@click.option("--model", required=True, help="Built-in model name or path to a config.json.")
@click.option("--chip", required=True, help="Chip type.")
@click.option("--topology", required=True, help="Slice shape, e.g. 4x8 (GPUs: number of GPUs).")
@click.option("--tp", type=POSITIVE_INT, default=None, help="Model-parallel degree (default: every chip).")
@click.option("--weights", required=True, help=f"Weight dtype ({', '.join(DTYPES)}).")
@click.option("--kv", required=True, help=f"KV-cache dtype ({', '.join(DTYPES)}).")
@click.option("--batch", type=POSITIVE_INT, required=True, help="Sequences in flight per replica.")
@click.option("--context", type=POSITIVE_INT, default=8192, show_default=True)
@click.option("--decode-len", type=POSITIVE_INT, default=512, show_default=True)
@prompt_options
@chips_option
@price_option
@profile_options
@click.option("--json", "as_json", is_flag=True)
def evaluate_cmd(
    model: str,
    chip: str,
    topology: str,
    tp: int | None,
    weights: str,
    kv: str,
    batch: int,
    context: int,
    decode_len: int,
    prompt_len: int | None,
    prefill_mfu: float,
    chips_file: str | None,
    prices: tuple[str, ...],
    profile: str,
    engine: str | None,
    calibration: str | None,
    as_json: bool,
) -> None:
    """The roofline of one fixed configuration (reported even when it does not fit)."""
    from optimizer.api import evaluate

    e = evaluate(
        model,
        chip,
        topology,
        weights=weights,
        kv=kv,
        batch=batch,
        tp=tp,
        context=context,
        decode_len=decode_len,
        prompt_len=prompt_len,
        prefill_mfu=prefill_mfu,
        chips=_catalog(chips_file, prices),
        profile=profile,
        engine=engine,
        calibration=calibration,
    )
    if as_json:
        _emit_json(e.to_dict())
        return
    b = e.breakdown_ms
    lines = [
        f"{e.model} on {e.chip} {e.topology}: "
        + (
            f"{e.tp}-way model parallel over {e.n_axes} {'axis' if e.n_axes == 1 else 'axes'}, "
            if e.tp > 1
            else "no model parallelism, "
        )
        + f"{e.replicas} {'replica' if e.replicas == 1 else 'replicas'}; {e.weights} weights, {e.kv} KV; "
        f"batch {e.batch}, context {e.context}",
        f"HBM per replica  {e.hbm_bytes / 1e9:.1f} GB: weights {e.param_bytes / 1e9:.2f} GB, KV "
        f"{e.kv_bytes / 1e9:.2f} GB ({e.kv_bytes_per_token:,.0f} B/token); fits: {'yes' if e.fits else 'NO'}; "
        f"max batch {e.max_batch}",
        (
            f"decode step      {e.step_ms:.3f} ms = KV {b['kv']:.3f} + max(FLOPs {b['flops']:.3f}, "
            f"params {b['params']:.3f})"
            if profile == "book"
            else f"decode step      {e.step_ms:.3f} ms = overheads and collectives {b['overheads_and_collectives']:.3f} + "
            f"max(FLOPs {b['flops']:.3f}, params {b['params']:.3f} + KV {b['kv']:.3f}) (calibrated profile)"
        ),
        f"critical batch   {'never' if e.critical_batch is None else f'{e.critical_batch:.1f}'}; "
        f"comms-bound: {'yes' if e.comms_bound else 'no'}",
        f"throughput       {e.tokens_per_s:,.0f} tokens/s ({e.tokens_per_s_per_chip:,.1f} per chip), "
        f"{e.qps_per_chip:.4f} queries/s per chip",
        f"cost             ${e.cost_per_hour:,.2f}/hour, {e.queries_per_dollar:,.1f} queries/$, "
        f"${e.usd_per_million_tokens:.3f} per million output tokens",
        f"prefill          {e.prefill_ms:,.1f} ms per {e.prompt_len}-token prompt "
        + (f"at {e.prefill_mfu:g} MFU" if profile == "book" else "at the calibrated rate")
        + f"{'' if e.prompt_fits else ' (the prompt does not fit)'}; {e.prefill_servers_per_replica:.3f} prefill "
        f"servers of this configuration per decode replica",
    ]
    if not e.fits:
        lines.insert(2, "                 (does not fit: the figures below are what the roofline would give if it did)")
    click.echo("\n".join(lines))


def _write_points(points: list, out: str) -> None:
    """--out FILE.csv or FILE.json for frontier / by-batch points."""
    import csv
    from pathlib import Path

    path = Path(out)
    rows = [p.to_dict() for p in points]
    try:
        with open(path, "w", newline="") as f:
            if path.suffix.lower() == ".json":
                json.dump(rows, f, indent=2)
            else:
                w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["context"])
                w.writeheader()
                w.writerows(rows)
    except OSError as e:
        raise InputError(f"--out {path}: cannot be written ({e.strerror})") from None


@main.command("frontier")
@click.option("--model", required=True, help="Built-in model name or path to a config.json.")
@click.option("--chip", "chip_names", multiple=True, help="Chip type (repeatable; default all).")
@click.option("--context", "contexts", type=POSITIVE_INT, multiple=True, help="KV length (repeatable; default 8192).")
@click.option("--decode-len", type=POSITIVE_INT, default=512, show_default=True)
@click.option("--weights", multiple=True, help="Weight dtype (repeatable; with --by-batch exactly one).")
@click.option("--kv", multiple=True, help="KV-cache dtype (repeatable; with --by-batch exactly one).")
@click.option("--by-batch", is_flag=True, help="One configuration's latency and throughput against batch.")
@click.option("--topology", default=None, help="With --by-batch: the slice shape.")
@click.option("--tp", type=POSITIVE_INT, default=None, help="With --by-batch: model-parallel degree.")
@click.option("--slo-ms", type=POSITIVE_FLOAT, default=None, help="Mark this latency target (and its optimum).")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write .csv, .json, .png or .svg.")
@chips_option
@price_option
@profile_options
@click.option("--json", "as_json", is_flag=True)
def frontier_cmd(
    model: str,
    chip_names: tuple[str, ...],
    contexts: tuple[int, ...],
    decode_len: int,
    weights: tuple[str, ...],
    kv: tuple[str, ...],
    by_batch: bool,
    topology: str | None,
    tp: int | None,
    slo_ms: float | None,
    out: str | None,
    chips_file: str | None,
    prices: tuple[str, ...],
    profile: str,
    engine: str | None,
    calibration: str | None,
    as_json: bool,
) -> None:
    """The latency-cost Pareto frontier (decode), or one configuration against batch (--by-batch)."""
    from pathlib import Path

    from optimizer import load_model
    from optimizer.errors import unknown_name
    from optimizer.frontier import by_batch as batch_view
    from optimizer.frontier import frontier
    from optimizer.plots import PLOT_SUFFIXES, plot_by_batch, plot_frontier

    catalog = _catalog(chips_file, prices)
    mdl = load_model(model)
    contexts = contexts or (8192,)
    for n in chip_names:
        if n not in catalog:
            raise unknown_name("chip", n, sorted(catalog))
    suffix = Path(out).suffix.lower() if out else None
    if suffix is not None and suffix not in (".csv", ".json", *PLOT_SUFFIXES):
        raise InputError(f"--out {out}: unknown suffix {suffix!r}; valid: .csv, .json, .png, .svg")
    if out and as_json:
        raise InputError("--json prints to the terminal; with --out the file's suffix chooses the format")
    if not by_batch and (topology is not None or tp is not None):
        raise InputError("--topology and --tp fix one configuration: they go with --by-batch")
    if by_batch and slo_ms is not None:
        raise InputError("--slo-ms marks the optimum on the frontier; --by-batch has no optimum to mark")
    if by_batch:
        if len(chip_names) != 1 or topology is None or len(weights) != 1 or len(kv) != 1:
            raise click.UsageError("--by-batch needs one --chip, --topology, one --weights and one --kv")
        points: list = []
        for context in contexts:
            points += batch_view(
                mdl,
                catalog[chip_names[0]],
                topology,
                tp,
                weights[0],
                kv[0],
                context,
                decode_len,
                profile=profile,
                engine=engine,
                calibration=calibration,
            )
        if not points:
            click.echo(
                f"nothing to show: {mdl.name} does not fit on {chip_names[0]} {topology} in "
                f"{weights[0]}/{kv[0]} with one sequence of any of the contexts asked "
                f"({', '.join(map(str, contexts))} tokens)"
            )
            return
        y = points[0].tp
        title = (
            f"{mdl.name} on {chip_names[0]} {topology} ({y}-way model parallel), {weights[0]} weights, "
            f"{kv[0]} KV: decode step and throughput per chip against batch ({profile} profile)"
        )
        plot = lambda path: plot_by_batch(points, path, title)  # noqa: E731
    else:
        selected = {n: catalog[n] for n in (chip_names or sorted(catalog))}
        points = []
        for context in contexts:
            points += frontier(
                mdl,
                selected,
                context,
                decode_len,
                tuple(weights) or None,
                tuple(kv) or None,
                profile=profile,
                engine=engine,
                calibration=calibration,
            )
        if not points:
            click.echo(
                f"nothing to show: {mdl.name} fits on none of the chips asked with one sequence of "
                f"{', '.join(map(str, contexts))} tokens"
            )
            return
        chosen = []
        for context in contexts if slo_ms is not None else ():
            ok = [p for p in points if p.context == context and p.step_ms <= slo_ms]
            if ok:
                p = min(ok, key=lambda p: p.usd_per_million_tokens)
                chosen.append(
                    (
                        p.step_ms,
                        p.usd_per_million_tokens,
                        f"cheapest within {slo_ms:g} ms at {context:,} "
                        f"tokens: {p.chip} {p.topology} {p.weights}/{p.kv} batch {p.batch}",
                    )
                )
            else:
                click.echo(f"no configuration meets {slo_ms:g} ms at {context:,} tokens")
        title = f"{mdl.name}: latency-cost frontier of decode ({profile} profile, {decode_len} output tokens per query)"
        plot = lambda path: plot_frontier(points, path, title, chosen=chosen, slo_ms=slo_ms)  # noqa: E731
    if suffix in PLOT_SUFFIXES:
        plot(out)
        click.echo(f"wrote {out} ({len(points)} points)")
    elif out:
        _write_points(points, out)
        click.echo(f"wrote {out} ({len(points)} points)")
    elif as_json:
        _emit_json({"points": [p.to_dict() for p in points]})
    elif by_batch:
        click.echo(
            _fmt_table(
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
        )
    else:
        click.echo(
            _fmt_table(
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
        )


@main.command("zoo")
@click.argument("zoo_file", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output file: .csv, .jsonl or .md (rows appended as they finish).",
)
@click.option(
    "--workers", type=POSITIVE_INT, default=None, show_default="all cores", help="Worker processes (local backend)."
)
@click.option("--resume", is_flag=True, help="Skip scenarios already in --out; never write one twice.")
@click.option("--backend", default="local", show_default=True, help="local or ray.")
@click.option("--address", default=None, help="Ray cluster address (default: start a local Ray).")
def zoo_cmd(zoo_file: str, out: str, workers: int | None, resume: bool, backend: str, address: str | None) -> None:
    """Solve every model x scenario of a zoo file, one row per scenario, as optimize would."""
    import importlib.util
    from pathlib import Path

    from optimizer.zoo import load_zoo, scenarios, solve_zoo
    from optimizer.zoo_output import RowWriter, read_rows

    if backend not in ("local", "ray"):
        raise InputError(f"unknown backend {backend!r}; valid: local, ray")
    if backend == "local" and address is not None:
        raise InputError("--address is for --backend ray")
    if backend == "ray" and workers is not None:
        raise InputError("--workers is for the local backend; Ray schedules on the cluster's CPUs")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise InputError("the ray backend needs Ray: pip install 'servesat[ray]'")
    if Path(out).resolve() == Path(zoo_file).resolve():
        raise InputError(f"--out {out} is the zoo file itself")
    zoo = load_zoo(zoo_file)
    every = scenarios(zoo)
    # every check is done: only now may an existing --out be replaced (or appended to)
    writer = RowWriter(out, resume)
    todo = [s for s in every if s["scenario_id"] not in writer.done]
    progress = Progress(len(todo)) if sys.stderr.isatty() else None
    solved = 0
    try:
        for row in solve_zoo(
            zoo, workers=workers or max(os.cpu_count() or 1, 1), backend=backend, address=address, skip=writer.done
        ):
            writer.write(row)
            solved += 1
            if progress:
                progress.step()
    finally:
        writer.close()
        if progress:
            progress.finish()
    ids = {s["scenario_id"] for s in every}
    click.echo(f"{solved} scenarios solved, {len(every) - len(todo)} already in {out}; {len(every)} in the zoo")
    click.echo(_zoo_summary([r for r in read_rows(out) if r["scenario_id"] in ids]))


class Progress:
    """A one-line progress bar with rate and ETA on stderr (terminals only)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def step(self) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(30 * self.done / max(self.total, 1))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {rate:.1f}/s ETA {eta:.0f}s "
        )
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")


def _zoo_summary(rows: list[dict]) -> str:
    """Per model: the best chip and its $/million tokens over its scenarios, and the failures."""
    table = []
    for model in dict.fromkeys(str(r["model"]) for r in rows):
        mine = [r for r in rows if str(r["model"]) == model]
        solved = [r for r in mine if r["queries_per_dollar"] is not None]
        best = max(solved, key=lambda r: r["queries_per_dollar"]) if solved else None
        table.append(
            [
                model,
                str(len(mine)),
                best["chip"] if best else "-",
                f"{best['usd_per_million_tokens']:.3f}" if best else "-",
                str(sum(r["status"] == "infeasible" for r in mine)),
                str(sum(r["status"] == "error" for r in mine)),
            ]
        )
    if not table:
        return "nothing new to solve"
    return _fmt_table(["model", "scenarios", "best chip", "best $/Mtok", "infeasible", "errors"], table)


@main.command("models")
@click.option("--json", "as_json", is_flag=True)
def models_cmd(as_json: bool) -> None:
    """The built-in model zoo, with parameter counts and KV bytes per token."""
    rows: list[dict[str, Any]] = []
    for name, m in builtin_models().items():
        rows.append(
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
        )
    if as_json:
        _emit_json({"models": rows})
        return
    click.echo(
        _fmt_table(
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
                for r in rows
            ],
        )
    )


@main.command("chips")
@chips_option
@price_option
@click.option("--json", "as_json", is_flag=True)
def chips_cmd(chips_file: str | None, prices: tuple[str, ...], as_json: bool) -> None:
    """The chip catalog: specs, prices and slice shapes, each with its source."""
    catalog = _catalog(chips_file, prices)
    if as_json:
        from dataclasses import asdict

        _emit_json(
            {"chips": [{**asdict(c), "ici_bytes_per_s_per_axis": c.ici_bytes_per_s_per_axis} for c in catalog.values()]}
        )
        return
    click.echo(
        _fmt_table(
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
    )


@main.command("plan")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the plan as JSON to FILE.")
@click.option(
    "--maximize-served",
    is_flag=True,
    help="Serve as much of the forecast as quotas and budget allow, then at the least cost.",
)
@click.option(
    "--time-limit",
    type=POSITIVE_FLOAT,
    default=10.0,
    show_default=True,
    help="Seconds for the whole plan (offers, model, solver).",
)
@click.option("--workers", type=POSITIVE_INT, default=2, show_default=True, help="Solver threads (1: deterministic).")
@chips_option
@click.option(
    "--profile",
    type=click.Choice(["book", "calibrated"]),
    default=None,
    help="Cost model of every model (default: the plan file's, else book).",
)
@click.option("--engine", default=None, help="Calibrated profile: serving engine.")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None, help="Calibrated-profile parameter file.")
def plan_cmd(
    plan_file: str,
    as_json: bool,
    out: str | None,
    maximize_served: bool,
    time_limit: float,
    workers: int,
    chips_file: str | None,
    profile: str | None,
    engine: str | None,
    calibration: str | None,
) -> None:
    """The cheapest fleet for a demand forecast: what to rent or commit to, per period."""
    from pathlib import Path

    from optimizer.fleet import plan

    if out is not None and Path(out).resolve() == Path(plan_file).resolve():
        raise InputError(f"--out {out} is the plan file itself")
    result = plan(
        plan_file,
        chips=load_chips(chips_file) if chips_file else None,
        time_limit_s=time_limit,
        maximize_served=maximize_served,
        workers=workers,
        profile=profile,
        engine=engine,
        calibration=calibration,
    )
    if out is not None:
        try:
            Path(out).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        except OSError as e:
            raise InputError(f"--out {out}: cannot write ({e.strerror})") from None
    if as_json:
        _emit_json(result.to_dict())
        return
    _echo_plan(result, plan_file)


def _echo_plan(r: Any, plan_file: str) -> None:
    name = r.period_name
    gap = f", gap {100 * r.gap:.2f}%" if r.gap is not None else ""
    objective = ", most demand served" if r.objective == "max-served" else ""
    click.echo(
        f"plan {plan_file}: {r.periods} {name}{'s' if r.periods != 1 else ''}, {r.profile} profile, "
        f"status {r.status}{gap}{objective}, solved in {r.solve.seconds:.2f} s ({r.solve.offers} offers after "
        f"pruning {r.solve.offers_before_pruning})"
    )
    if r.reason:
        click.echo(f"reason: {r.reason}")
    if r.total_cost_usd is None:
        return
    served = (
        f"; serves {r.served_qps:,.1f} of {r.required_qps:,.1f} required queries/s summed over {name}s"
        if r.served_qps is not None
        else ""
    )
    click.echo(
        f"total ${r.total_cost_usd:,.0f} over {r.periods} {name}{'s' if r.periods != 1 else ''} "
        f"(commitments {r.commitment_accounting}; headroom {100 * r.headroom:.0f}%){served}\n"
    )
    budgets = any(c.budget_usd is not None for c in r.costs)
    click.echo(
        _fmt_table(
            [name, "on demand $", "committed $", "total $"] + (["budget $"] if budgets else []),
            [
                [str(c.period), f"{c.on_demand_usd:,.0f}", f"{c.committed_usd:,.0f}", f"{c.total_usd:,.0f}"]
                + ([f"{c.budget_usd:,.0f}"] if budgets else [])
                for c in r.costs
            ],
        )
    )
    click.echo("\nBill of materials (chips per pool; slices by shape)")
    click.echo(
        _fmt_table(
            [name, "pool", "quota", "used", "committed", "on demand", "$", "slices"],
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
    )
    if r.commitments:
        click.echo("\nCommitments")
        click.echo(
            _fmt_table(
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
        )
    click.echo("\nDeployments (decode replicas + prefill servers; slices x pool shape, tp, weights/kv)")
    click.echo(
        _fmt_table(
            ["model", name, "forecast", "required", "capacity", "util", "headroom", "chips", "slices"],
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
                    " + ".join(_entry_text(e) for e in m.entries) or "-",
                ]
                for m in r.models
            ],
        )
    )
    click.echo("\nWhat binds")
    for line in r.binding:
        click.echo(f"- {line}")
    for line in r.shortfalls:
        click.echo(f"- short: {line}")
    for line in r.notes:
        click.echo(f"note: {line}")


def _entry_text(e: Any) -> str:
    role = "" if e.role == "decode" else "prefill "
    extra = f" B{e.batch}" if e.batch is not None else ""
    return f"{e.slices}x {role}{e.pool} {e.topology} tp{e.tp} {e.weights}/{e.kv}{extra}"


@main.command("calibrate")
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    default=None,
    help="Measurements CSV (calibration schema; default: the bundled file).",
)
@click.option(
    "--out",
    default="calibrated.toml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Parameter file to write (read back with --calibration FILE).",
)
@chips_option
@click.option("--json", "as_json", is_flag=True)
def calibrate_cmd(data: str | None, out: str, chips_file: str | None, as_json: bool) -> None:
    """Fit the calibrated profile's parameters to measured TPOT and TTFT; print and write them."""
    from pathlib import Path

    from optimizer.calibration import bundled_data, fit, load_measurements, validate, with_catalog

    catalog = load_chips(chips_file)
    path = Path(data) if data else bundled_data()
    m = load_measurements(path, catalog)
    params = with_catalog(fit(m, f"fitted by servesat calibrate to {path.name} ({len(m)} rows)"), catalog)
    try:
        Path(out).write_text(params.to_toml())
    except OSError as e:
        raise InputError(f"--out {out}: cannot write ({e.strerror})") from None
    check = validate(m, "calibrated", params)
    if as_json:
        from dataclasses import asdict

        _emit_json({"params": asdict(params), "in_sample": check.overall, "skipped": check.skipped, "out": out})
        return
    click.echo(f"fitted to {len(m)} rows of {path} ({len(m.skipped)} skipped); written to {out}")
    click.echo(f"collective latency  {params.collective_latency_s * 1e6:.2f} us per all-reduce stage")
    click.echo(
        _fmt_table(
            ["chip", "HBM efficiency", "FLOP/s efficiency", "fitted"],
            [
                [n, f"{c.hbm_efficiency:.3f}", f"{c.flops_efficiency:.3f}", "no (assumed)" if c.assumed else "yes"]
                for n, c in sorted(params.chips.items())
            ],
        )
    )
    click.echo(
        _fmt_table(
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
    )
    click.echo(f"in-sample MAPE: TPOT {check.overall['tpot_mape']:.2f}%, TTFT {check.overall['ttft_mape']:.2f}%")


@main.command("validate")
@click.option("--data", type=click.Path(dir_okay=False), required=True, help="Measurements CSV (calibration schema).")
@click.option("--profile", type=click.Choice(["book", "calibrated"]), default="calibrated", show_default=True)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False),
    default=None,
    help="Calibrated-profile parameter file (default built-in).",
)
@click.option("--lomo", is_flag=True, help="Also leave-one-model-out: refit without each model, predict it.")
@chips_option
@click.option("--json", "as_json", is_flag=True, help="Per-row predictions and the summaries as JSON.")
def validate_cmd(
    data: str, profile: str, calibration: str | None, lomo: bool, chips_file: str | None, as_json: bool
) -> None:
    """Predicted TPOT and TTFT of every row of a measurements CSV, and their errors."""
    from optimizer.calibration import load_measurements, load_params, validate

    if profile == "book" and (calibration or lomo):
        raise InputError("--calibration and --lomo apply to --profile calibrated")
    m = load_measurements(data, load_chips(chips_file))
    params = load_params(calibration) if profile == "calibrated" else None
    result = validate(m, profile, params, leave_one_model_out=lomo)
    if as_json:
        _emit_json(result.to_dict())
        return
    click.echo(f"{profile} profile on {data}: {len(m)} rows, {len(m.skipped)} skipped")
    click.echo(
        _fmt_table(
            ["model", "system", "engine", "precision", "rows", "TPOT MAPE", "TTFT MAPE"],
            [
                [
                    g["model"],
                    g["system"],
                    g["engine"],
                    g["precision"],
                    str(g["n"]),
                    f"{g['tpot_mape']:.1f}%",
                    f"{g['ttft_mape']:.1f}%",
                ]
                for g in result.groups
            ]
            + [
                [
                    "all",
                    "",
                    "",
                    "",
                    str(result.overall["n"]),
                    f"{result.overall['tpot_mape']:.1f}%",
                    f"{result.overall['ttft_mape']:.1f}%",
                ]
            ],
        )
    )
    if result.leave_one_model_out is not None:
        click.echo("\nLeave one model out (fit without it, predict it):")
        click.echo(
            _fmt_table(
                ["held out", "rows", "TPOT MAPE", "TTFT MAPE"],
                [
                    [r["model"], str(r["n"]), f"{r['tpot_mape']:.1f}%", f"{r['ttft_mape']:.1f}%"]
                    for r in result.leave_one_model_out
                ],
            )
        )
    for s in result.skipped:
        click.echo(f"skipped line {s['line']}: {s['reason']}")


if __name__ == "__main__":
    main()
