"""servesat's command line: parse, call the optimizer library, echo what optimizer.render makes of it."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
from click import argument, option

from optimizer import render
from optimizer.catalog import DTYPES, load_chips, parse_prices
from optimizer.errors import InputError, check_not_an_input, write_out
from optimizer.launch.engines import ENGINES, FORMATS
from optimizer.models import builtin_models
from optimizer.workload import OBJECTIVES

# The solver (ortools, which imports pandas) loads inside the commands that solve, so that
# `servesat models`, `servesat chips` and --help start in a tenth of the time.


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange without NaN and infinity (NaN passes every range comparison)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{v!r} is not a finite number.", param, ctx)
        return v


POSITIVE_INT = click.IntRange(min=1)
POSITIVE_FLOAT = FiniteFloatRange(min=0, min_open=True)
FILE = click.Path(dir_okay=False)
PROFILES = click.Choice(["book", "calibrated"])
DTYPES_HELP = f"dtype ({', '.join(DTYPES)})"
UNIT = FiniteFloatRange(0, 1, min_open=True)


class OneLineErrors:
    """Print every usage or input error as one line on stderr and exit 2, never a traceback."""

    def main(self, args: Any = None, prog_name: str | None = None, **kwargs: Any) -> Any:
        try:
            rv = super().main(args, prog_name, **{**kwargs, "standalone_mode": False})  # type: ignore[misc]
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


class Group(OneLineErrors, click.Group): ...  # type: ignore[misc]


class Command(OneLineErrors, click.Command): ...  # type: ignore[misc]


# Every option, declared once; a command names the ones it takes, or a group of them (GROUPS).
OPTIONS: dict[str, Callable] = {
    "model": option("--model", required=True, help="Built-in model name or path to a config.json."),
    "chips": option("--chip", "chip_names", multiple=True, help="Chip type to consider (repeatable; default all)."),
    "chip": option("--chip", required=True, help="Chip type."),
    "context": option("--context", type=POSITIVE_INT, default=8192, help="KV length per sequence."),
    "contexts": option("--context", "contexts", type=POSITIVE_INT, multiple=True, help="KV length (repeatable)."),
    "decode-len": option("--decode-len", type=POSITIVE_INT, default=512, help="Output tokens per query."),
    "weights*": option("--weights", multiple=True, help=f"Weight {DTYPES_HELP} (repeatable; default: the chip's)."),
    "kv*": option("--kv", multiple=True, help=f"KV-cache {DTYPES_HELP} (repeatable; default: the chip's)."),
    "weights": option("--weights", required=True, help=f"Weight {DTYPES_HELP}."),
    "kv": option("--kv", required=True, help=f"KV-cache {DTYPES_HELP}."),
    "prompt-len": option("--prompt-len", type=POSITIVE_INT, help="Prompt tokens (default: context - decode length)."),
    "prefill-mfu": option("--prefill-mfu", type=UNIT, help="Book profile: prefill's FLOPs utilization [default: 0.4]."),
    "chips-file": option("--chips", "chips_file", type=FILE, help="TOML chips: add to (or replace) the built-in."),
    "price": option("--price", "prices", multiple=True, metavar="CHIP=USD", help="A chip's $/chip-hour (repeatable)."),
    "prices-file": option("--prices", "prices_file", type=FILE, help="TOML [prices.CHIP]: the catalog's prices."),
    "profile": option(
        "--profile", type=PROFILES, default="book", help="Cost model: roofline (book) or fitted (calibrated)."
    ),
    "engine": option("--engine", help="Calibrated profile: serving engine whose fitted overheads apply."),
    "calibration": option("--calibration", type=FILE, help="Calibrated-profile parameter file (servesat calibrate)."),
    "json": option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    "topology": option("--topology", required=True, help="Slice shape, e.g. 4x8 (GPUs: number of GPUs)."),
    "tp": option("--tp", type=POSITIVE_INT, help="Model-parallel degree (default: every chip)."),
    "attention-dp": option("--attention-dp", type=POSITIVE_INT, default=1, help="Attention data-parallel groups."),
    "ep": option("--ep", type=POSITIVE_INT, default=1, help="Chips the routed experts spread over."),
    "pp": option("--pp", type=POSITIVE_INT, help="Pipeline stages (default: one per node of the slice)."),
    "nodes": option("--max-nodes", type=POSITIVE_INT, help="Nodes a GPU replica may span [default: 4]."),
    # optimize
    "slo-ms": option("--slo-ms", type=POSITIVE_FLOAT, required=True, help="Per-token latency target (ms)."),
    "objective": option("--objective", default=OBJECTIVES[0], help=f"One of: {', '.join(OBJECTIVES)}."),
    "top": option("--top", type=POSITIVE_INT, default=3, help="Configurations to rank."),
    "ttft-ms": option("--ttft-ms", type=POSITIVE_FLOAT, help="Time-to-first-token target: one prompt's prefill (ms)."),
    "colocated": option("--colocated", is_flag=True, help="Prefill on the decode replicas instead of prefill servers."),
    "decode-only": option("--decode-only", is_flag=True, help="Ignore prompts: the chapter's decode-only roofline."),
    "compare": option("--compare-colocated", is_flag=True, help="Also solve the other prefill mode; compare."),
    "qps": option("--qps", type=POSITIVE_FLOAT, help="Demand (queries/s): size the cheapest whole deployment."),
    "time-limit": option("--time-limit", type=POSITIVE_FLOAT, default=5.0, help="Demand: solver seconds."),
    "plot": option("--plot", "plot_path", type=FILE, help="Draw the frontier, the choice, the SLO (.png/.svg)."),
    # evaluate, frontier
    "batch": option("--batch", type=POSITIVE_INT, required=True, help="Sequences in flight per replica."),
    "by-batch": option("--by-batch", is_flag=True, help="One configuration's latency and throughput against batch."),
    "batch-topology": option("--topology", help="With --by-batch: the slice shape."),
    "slo-mark": option("--slo-ms", type=POSITIVE_FLOAT, help="Mark this latency target (and its optimum)."),
    "points-out": option("--out", type=FILE, help="Write .csv, .json, .png or .svg."),
    # zoo
    "zoo-file": argument("zoo_file", type=FILE),
    "rows-out": option("--out", required=True, type=FILE, help="Rows as they finish: .csv, .jsonl or .md."),
    "processes": option("--workers", type=POSITIVE_INT, show_default="all cores", help="Local backend: processes."),
    "resume": option("--resume", is_flag=True, help="Skip scenarios already in --out; never write one twice."),
    "backend": option("--backend", type=click.Choice(["local", "ray"]), default="local"),
    "address": option("--address", help="Ray cluster address (default: start a local Ray)."),
    # plan
    "plan-file": argument("plan_file", type=FILE),
    "plan-out": option("--out", type=FILE, help="Also write the plan as JSON to FILE."),
    "maximize": option("--maximize-served", is_flag=True, help="Serve what quotas and budget allow, cheapest."),
    "plan-time": option("--time-limit", type=POSITIVE_FLOAT, default=10.0, help="Seconds for the plan."),
    "threads": option("--workers", type=POSITIVE_INT, default=2, help="Solver threads (1: deterministic)."),
    "plan-profile": option("--profile", type=PROFILES, help="Cost model (default: the plan file's, else book)."),
    # calibrate, validate
    "data": option("--data", type=FILE, help="Measurements CSV (calibration schema; default: the bundled file)."),
    "params-out": option("--out", default="calibrated.toml", type=FILE, help="Parameter file to write."),
    "data-csv": option("--data", type=FILE, required=True, help="Measurements CSV (calibration schema)."),
    "check-profile": option("--profile", type=PROFILES, default="calibrated"),
    "lomo": option("--lomo", is_flag=True, help="Leave-one-model-out: refit without each model, predict it."),
    # launch
    "launch-engine": option("--engine", type=click.Choice(ENGINES), default="vllm", help="Engine to run (and cost)."),
    "format": option("--format", "fmt", type=click.Choice(FORMATS), default="shell", help="Commands or manifests."),
    "image": option("--image", help="Container image (default: the engine's for the chip family)."),
    "out-dir": option("--out", "out_dir", type=click.Path(file_okay=False), help="Write one file per workload."),
}
GROUPS = {
    "dtypes": ("weights*", "kv*"),
    "dtype": ("weights", "kv"),
    "prompt": ("prompt-len", "prefill-mfu"),
    "catalog": ("chips-file", "prices-file", "price"),
    "cost-model": ("profile", "engine", "calibration"),
}


def options(*names: str) -> Callable[[Callable], Callable]:
    """The named OPTIONS (or GROUPS of them) as one decorator, listed in --help in this order."""
    decorators = [OPTIONS[k] for n in names for k in GROUPS.get(n, (n,))]
    return lambda f: functools.reduce(lambda g, d: d(g), reversed(decorators), f)


def command(name: str, group: click.Group | None = None) -> Callable[[Callable[[Any], None]], click.Command]:
    """A command (one-line errors also when run on its own, as `optimize`), added to `group`;
    its options (the @options below it) reach the function as one namespace: o.model, ..."""

    def make(f: Callable[[Any], None]) -> click.Command:
        @functools.wraps(f)  # also carries over the options click attached to f
        def run(**kw: Any) -> None:
            f(SimpleNamespace(**kw))

        cmd = click.command(name, cls=Command, context_settings={"show_default": True})(run)
        if group is not None:
            group.add_command(cmd)
        return cmd

    return make


def _catalog(o: Any, unpriced: bool = False):
    """The chip catalog (built-in, or with --chips FILE) with --prices FILE, then --price CHIP=USD."""
    return load_chips(o.chips_file, parse_prices(o.prices), o.prices_file, unpriced=unpriced)


@click.group(cls=Group)
def main() -> None:
    """servesat: choose how to serve an LLM (chip, slice, sharding, dtypes, batch), proven optimal."""


def _profile(o: Any) -> Any:
    """The cost profile named by --profile/--engine/--calibration (and --prefill-mfu)."""
    from optimizer.profiles import resolve_profile

    mfu = getattr(o, "prefill_mfu", None)
    return resolve_profile(o.profile, engine=o.engine, calibration=o.calibration, prefill_mfu=mfu)


def _workload(o: Any, context: int | None = None, **served: Any) -> Any:
    from optimizer.workload import Workload

    return Workload(context=context or o.context, decode_len=o.decode_len, **served)


@command("optimize", main)
@options("model", "slo-ms", "chips", "context", "decode-len", "dtypes", "objective", "top", "prompt", "ttft-ms")
@options("colocated", "decode-only", "compare", "qps", "time-limit", "plot", "catalog", "cost-model", "nodes", "json")
def optimize_cmd(o: Any) -> None:
    """The configuration with the most queries per dollar whose every output token meets --slo-ms."""
    from optimizer.api import optimize
    from optimizer.options import OptimizeOptions
    from optimizer.plots import check_plot_path, plot_optimum

    opts = OptimizeOptions.from_options(vars(o))
    if o.plot_path is not None:
        check_plot_path(o.plot_path)
    workload, search, profile = opts.workload(), opts.search(), opts.cost_profile()
    result = optimize(
        o.model, workload, profile=profile, search=search, objective=o.objective, top=o.top, qps=o.qps,
        compare_colocated=o.compare_colocated, time_limit_s=o.time_limit,
    )  # fmt: skip
    if o.plot_path is not None:
        plot_optimum(o.model, result, workload, profile, search, o.plot_path)
    click.echo(render.json_text(result.to_dict()) if o.as_json else render.optimize_result(result))


@command("launch", main)
@options("model", "slo-ms", "chips", "context", "decode-len", "dtypes", "objective", "prompt", "ttft-ms", "colocated")
@options("decode-only", "qps", "time-limit", "catalog", "profile", "launch-engine", "calibration", "format", "image")
@options("nodes", "out-dir", "json")
def launch_cmd(o: Any) -> None:
    """The engine commands (or Kubernetes manifests) that start the optimum's servers."""
    from optimizer.launch import launch, write_files
    from optimizer.options import OptimizeOptions

    opts = OptimizeOptions.from_options({**vars(o), "engine": o.engine if o.profile == "calibrated" else None})
    plan = launch(
        o.model, opts.workload(), profile=opts.cost_profile(), search=opts.search(), engine=o.engine, fmt=o.fmt,
        qps=o.qps, objective=o.objective, time_limit_s=o.time_limit, image=o.image,
    )  # fmt: skip
    wrote = write_files(o.out_dir, render.launch_files(plan)) if o.out_dir is not None and plan.servers else None
    click.echo(render.json_text(plan.to_dict()) if o.as_json else render.launch_text(plan, wrote))


@command("evaluate", main)
@options("model", "chip", "topology", "tp", "pp", "attention-dp", "ep", "dtype", "batch", "context", "decode-len")
@options("prompt", "catalog", "cost-model", "json")
def evaluate_cmd(o: Any) -> None:
    """The roofline of one fixed configuration (reported even when it does not fit)."""
    from optimizer.api import evaluate

    e = evaluate(
        o.model, _workload(o, prompt_len=o.prompt_len, serving="decode-only"), profile=_profile(o), chip=o.chip,
        topology=o.topology, weights=o.weights, kv=o.kv, batch=o.batch, tp=o.tp, chips=_catalog(o), pp=o.pp,
        attention_dp=o.attention_dp, ep=o.ep,
    )  # fmt: skip
    click.echo(render.json_text(e.to_dict()) if o.as_json else render.evaluation(e))


@command("frontier", main)
@options("model", "chips", "contexts", "decode-len", "dtypes", "by-batch", "batch-topology", "tp", "slo-mark")
@options("points-out", "catalog", "cost-model", "json")
def frontier_cmd(o: Any) -> None:
    """The latency-cost Pareto frontier (decode), or one configuration against batch (--by-batch)."""
    from optimizer import load_model
    from optimizer.api import Search
    from optimizer.frontier import by_batch, caveats, frontier
    from optimizer.options import check_frontier_options
    from optimizer.plots import PLOT_SUFFIXES, plot_by_batch, plot_frontier

    catalog, names, _, _ = Search(_catalog(o), o.chip_names or None).resolve()
    mdl = load_model(o.model)
    contexts = o.contexts or (8192,)
    check_frontier_options(vars(o))
    profile = _profile(o)
    workloads = [_workload(o, context, serving="decode-only") for context in contexts]
    points: list = []
    if o.by_batch:
        one = {"chip": catalog[o.chip_names[0]], "topology": o.topology, "tp": o.tp, "weights": o.weights[0]}
        for w in workloads:
            points += by_batch(mdl, w, profile=profile, kv=o.kv[0], **one)
        what = (mdl.name, o.chip_names[0], o.topology, o.weights[0], o.kv[0])
        if not points:
            click.echo(render.no_batches(*what, contexts), err=o.as_json)
            click.echo(render.points_json(points, caveats(profile, what[1:2])) if o.as_json else "", nl=o.as_json)
            return
        plot = functools.partial(plot_by_batch, points, title=render.by_batch_title(*what, points[0].tp, o.profile))
    else:
        selected = {n: catalog[n] for n in names}
        for w in workloads:
            points += frontier(mdl, w, profile=profile, chips=selected, weights=o.weights or None, kv=o.kv or None)
        if not points:
            click.echo(render.no_frontier(mdl.name, contexts), err=o.as_json)
            click.echo(render.points_json(points, caveats(profile, names)) if o.as_json else "", nl=o.as_json)
            return
        chosen, missing = render.cheapest_marks(points, o.slo_ms, contexts)
        for line in missing:  # on stderr with --json, which stays one JSON object
            click.echo(line, err=o.as_json)
        title = render.frontier_title(mdl.name, o.profile, o.decode_len)
        plot = functools.partial(plot_frontier, points, title=title, chosen=chosen, slo_ms=o.slo_ms)
    about = caveats(profile, o.chip_names[:1] if o.by_batch else [p.chip for p in points])  # the points' chips
    if o.out and Path(o.out).suffix.lower() in PLOT_SUFFIXES:
        plot(path=o.out)
    elif o.out:
        write_out(str(Path(o.out)), render.points_file(points, Path(o.out).suffix), "", "cannot be written")
    if o.out:
        click.echo("\n".join([render.wrote(o.out, len(points)), *render.caveat_lines(about)]))
    else:
        click.echo(render.points_json(points, about) if o.as_json else render.points_text(points, o.by_batch, about))


def _progress(rows: Iterable[dict], total: int) -> contextlib.AbstractContextManager[Iterable[dict]]:
    """click's progress bar (with ETA) on stderr when it is a terminal; the rows as they are otherwise."""
    if sys.stderr.isatty():
        return click.progressbar(rows, length=total, file=sys.stderr, show_pos=True, show_eta=True)
    return contextlib.nullcontext(rows)


@command("zoo", main)
@options("zoo-file", "rows-out", "processes", "resume", "backend", "address")
def zoo_cmd(o: Any) -> None:
    """Solve every model x scenario of a zoo file, one row per scenario, as optimize would."""
    from optimizer.zoo_output import zoo_run

    run_args = {"workers": o.workers, "backend": o.backend, "address": o.address}
    with (
        zoo_run(o.zoo_file, o.out, resume=o.resume, **run_args) as run,
        _progress(run.rows, run.total - run.skipped) as bar,
    ):
        solved = sum(1 for _ in bar)
    click.echo(render.zoo_solved(solved, run.skipped, run.total, o.out))
    click.echo(render.zoo_summary(run.summary_rows()))


@command("models", main)
@options("json")
def models_cmd(o: Any) -> None:
    """The built-in model zoo, with parameter counts and KV bytes per token."""
    click.echo(render.models_json(builtin_models()) if o.as_json else render.models_table(builtin_models()))


@command("chips", main)
@options("catalog", "json")
def chips_cmd(o: Any) -> None:
    """The chip catalog: specs, prices and slice shapes, each with its source."""
    catalog = _catalog(o, unpriced=True)
    click.echo(render.chips_json(catalog) if o.as_json else render.chips_table(catalog))


@command("plan", main)
@options("plan-file", "json", "plan-out", "maximize", "plan-time", "threads", "chips-file", "plan-profile", "engine")
@options("calibration")
def plan_cmd(o: Any) -> None:
    """The cheapest fleet for a demand forecast: what to rent or commit to, per period."""
    from optimizer.planning import load_plan, plan

    check_not_an_input(o.out, o.plan_file, o.chips_file, o.calibration)
    catalog = load_chips(o.chips_file) if o.chips_file else None
    spec = load_plan(o.plan_file, catalog).with_profile(o.profile, o.engine, o.calibration)
    result = plan(spec, chips=catalog, time_limit_s=o.time_limit, maximize_served=o.maximize_served, workers=o.workers)
    if o.out is not None:
        write_out(o.out, render.json_text(result.to_dict()) + "\n")
    click.echo(render.json_text(result.to_dict()) if o.as_json else render.fleet_plan(result, o.plan_file))


@command("calibrate", main)
@options("data", "params-out", "chips-file", "lomo", "json")
def calibrate_cmd(o: Any) -> None:
    """Fit the calibrated profile's parameters to measured TPOT and TTFT; print and write them."""
    from optimizer.calibration import fit, fit_warnings, load_runs, validate, with_bands, with_catalog
    from optimizer.measurements import bundled_data
    from optimizer.profiles import Calibrated

    path = Path(o.data) if o.data else bundled_data()
    check_not_an_input(o.out, path, o.chips_file)
    catalog = load_chips(o.chips_file)
    m = load_runs(path, catalog)
    every_chip = {**getattr(catalog, "unpriced", {}), **catalog}  # priced or not: a price may come later
    params = with_catalog(fit(m, f"fitted by servesat calibrate to {path.name} ({len(m)} rows)"), every_chip)
    params = with_bands(m, params) if o.lomo else params  # --lomo: the prediction bands
    write_out(o.out, params.to_toml())
    check = validate(m, Calibrated(params))
    warnings = fit_warnings(m, params)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    text = render.calibration(params, check, path, m, o.out)
    click.echo(render.calibration_json(params, check, o.out, warnings) if o.as_json else text)


@command("validate", main)
@options("data-csv", "check-profile", "calibration", "lomo", "chips-file", "json")
def validate_cmd(o: Any) -> None:
    """Predicted TPOT and TTFT of every row of a measurements CSV, and their errors."""
    from optimizer.calibration import load_runs, validate
    from optimizer.profiles import resolve_profile

    if o.profile == "book" and (o.calibration or o.lomo):
        raise InputError("--calibration and --lomo apply to --profile calibrated")
    m = load_runs(o.data, load_chips(o.chips_file))
    result = validate(m, resolve_profile(o.profile, calibration=o.calibration), leave_one_model_out=o.lomo)
    click.echo(render.json_text(result.to_dict()) if o.as_json else render.validation(result, o.data, m))


if __name__ == "__main__":
    main()
