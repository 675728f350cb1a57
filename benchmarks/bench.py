"""Timing benchmarks for servesat (not part of the test suite). Run from the repository root:

    .venv/bin/python benchmarks/bench.py [--runs 7]

Prints a Markdown table; the recorded results live in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer import load_chips, load_model, optimize  # noqa: E402
from optimizer.api import Search  # noqa: E402
from optimizer.candidates import build_table  # noqa: E402
from optimizer.profiles import Book  # noqa: E402
from optimizer.solve import ServingModel  # noqa: E402
from optimizer.workload import Workload  # noqa: E402
from tests.bruteforce import brute_force  # noqa: E402

BIN = Path(sys.executable).parent


def median_s(fn, runs: int) -> tuple[float, list[float]]:
    fn()  # one warm-up run: page cache and the solver library, so the order of rows doesn't matter
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def process(cmd: list[str]):
    return lambda: subprocess.run(cmd, check=True, capture_output=True)


def scaled_catalog(factor: int):
    """The catalog repeated `factor` times, each copy 1% dearer: factor x the candidates."""
    base = load_chips()
    chips = {}
    for k in range(factor):
        for name, chip in base.items():
            label = name if k == 0 else f"{name}-copy{k}"
            chips[label] = replace(chip, name=label, usd_per_chip_hour=chip.usd_per_chip_hour * (1 + 0.01 * k))
    return chips


def decode_solve(model, chips, workload):
    """Candidate table, family caps, CP-SAT build and the winner's solve (no alternatives)."""
    table = build_table(model, chips, workload, Book())
    dm = ServingModel(table, workload, "queries-per-dollar")
    status, _ = dm.solve()
    assert status == "optimal"
    return len(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--demand-only", action="store_true")
    parser.add_argument("--zoo-only", action="store_true")
    parser.add_argument("--plan-only", action="store_true")
    args = parser.parse_args()
    runs = args.runs
    if args.plan_only:
        plans(runs)
    elif args.demand_only:
        demand(runs)
    elif args.zoo_only:
        zoo(runs)
    else:
        decode(runs)


def decode(runs: int) -> None:
    model = load_model("llama3-405b")
    chips = load_chips()
    w = Workload(context=8192, decode_len=512, slo_ms=15)
    rows = []
    w_decode = Workload(context=8192, decode_len=512, slo_ms=15, serving="decode-only")

    base, _ = median_s(process([sys.executable, "-c", "import ortools.sat.python.cp_model, numpy"]), runs)
    rows.append(("python -c 'import ortools.sat.python.cp_model, numpy' (baseline)", base, ""))
    whole, _ = median_s(process([str(BIN / "optimize"), "--model", "llama3-405b", "--slo-ms", "15"]), runs)
    rows.append(("whole process: optimize --model llama3-405b --slo-ms 15", whole, f"{whole / base:.2f}x baseline"))
    whole_j, _ = median_s(process([str(BIN / "optimize"), "--model", "llama3-405b", "--slo-ms", "15", "--json"]), runs)
    rows.append(("whole process: same, --json", whole_j, f"{whole_j / base:.2f}x baseline"))
    chips_2025 = ("a100", "b200", "h100", "h200", "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e")
    old = [a for c in chips_2025 for a in ("--chip", c)]
    whole_o, _ = median_s(process([str(BIN / "optimize"), "--model", "llama3-405b", "--slo-ms", "15", *old]), runs)
    rows.append(("whole process: same, the 8 chips of 2025 only", whole_o, f"{whole_o / base:.2f}x baseline"))

    decode_solve(model, chips, w)  # warm the solver library once
    n = decode_solve(model, chips, w)
    solve, _ = median_s(lambda: decode_solve(model, chips, w), runs)
    rows.append((f"solve: table + caps + CP-SAT build + solve ({n} candidates)", solve, ""))
    full, _ = median_s(lambda: optimize(model, w, search=Search(chips)), runs)
    others = len(chips) - 1
    rows.append((f"optimize() in process: winner, 2 runners-up, {others} alternatives ({others + 3} solves)", full, ""))
    brute, _ = median_s(
        lambda: brute_force(model, chips, sorted(chips), 15, 8192, 512, serving="disaggregated"), max(3, runs // 2)
    )
    rows.append(
        (
            "brute force (tests/bruteforce.py): every axis subset, every batch, with prefill servers",
            brute,
            f"{brute / solve:.0f}x the solve",
        )
    )
    n = decode_solve(model, chips, w_decode)
    solve_d, _ = median_s(lambda: decode_solve(model, chips, w_decode), runs)
    rows.append((f"solve, --decode-only ({n} candidates)", solve_d, ""))
    for factor in (1, 4, 16):
        cat = scaled_catalog(factor)
        n = decode_solve(model, cat, w)
        t, _ = median_s(lambda cat=cat: decode_solve(model, cat, w), runs)
        rows.append((f"solve with candidates x{factor} ({n} rows)", t, ""))

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; median of {runs} runs\n"
    )
    print("| what | median | note |\n|---|---|---|")
    for what, t, note in rows:
        print(f"| {what} | {t * 1e3:.0f} ms | {note} |")


def demand(runs: int) -> None:
    """Demand mode: optimize llama3-70b --slo-ms 50 --ttft-ms 1000 --qps Q, solve-only and whole call."""
    from optimizer.demand import deployment

    model = load_model("llama3-70b")
    chips = load_chips()
    w = Workload(context=8192, decode_len=512, slo_ms=50, ttft_ms=1000)
    table = build_table(model, chips, w, Book())
    sm = ServingModel(table, w, "queries-per-dollar")
    print("| demand (queries/s) | demand solve, median | status | gap | cost/hour | chips |\n|---|---|---|---|---|---|")
    for qps in (1, 100, 10_000):
        deployments: list = []
        t, _ = median_s(lambda qps=qps, out=deployments: out.append(deployment(sm, w, qps, 5.0)), runs)
        d = deployments[-1]
        print(f"| {qps:,} | {t * 1e3:.0f} ms | {d.status} | {d.gap:.4%} | ${d.cost_per_hour:,.2f} | {d.total_chips} |")


def _zoo_file(n_slo: int, path: Path) -> Path:
    """The built-in models x n_slo latency targets x 3 contexts."""
    from optimizer import builtin_models

    slos = [round(10 + 40 * k / max(n_slo - 1, 1), 3) for k in range(n_slo)]
    models = "".join(f'[[models]]\nname = "{m}"\n' for m in builtin_models())
    path.write_text(f"[grid]\nslo_ms = {slos}\ncontext = [2048, 8192, 32768]\n{models}")
    return path


def zoo(runs: int) -> None:
    """servesat zoo: scenarios per second (2 workers), whole command and in process, and growth."""
    import tempfile

    from optimizer.zoo import load_zoo
    from optimizer.zoo_solve import solve_zoo

    tmp = Path(tempfile.mkdtemp())
    example = ROOT / "examples" / "zoo.toml"
    whole, _ = median_s(
        process([str(BIN / "servesat"), "zoo", str(example), "--out", str(tmp / "o.csv"), "--workers", "2"]), runs
    )
    z = load_zoo(example)
    inproc, _ = median_s(lambda: list(solve_zoo(z, workers=2)), runs)
    print("| what | scenarios | median | scenarios/s |\n|---|---|---|---|")
    print(
        f"| servesat zoo examples/zoo.toml --workers 2 (whole process) | 120 | {whole * 1e3:.0f} ms | "
        f"{120 / whole:.0f} |"
    )
    print(f"| solve_zoo(examples/zoo.toml, workers=2) in process | 120 | {inproc * 1e3:.0f} ms | {120 / inproc:.0f} |")
    for n_slo, label in ((1, 30), (4, 120), (34, 1020)):
        zf = load_zoo(_zoo_file(n_slo, tmp / f"z{n_slo}.toml"))
        t, _ = median_s(lambda zf=zf: list(solve_zoo(zf, workers=2)), max(1, runs // 3) if label > 500 else runs)
        print(
            f"| growth: built-in models x {n_slo} targets x 3 contexts, workers=2 | {label} | {t * 1e3:.0f} ms | "
            f"{label / t:.0f} ({t / label * 1e3:.1f} ms each) |"
        )
    one = load_zoo(_zoo_file(1, tmp / "one.toml"))
    ten = type(one)(models=one.models[:1], grid={**one.grid, "slo_ms": [10, 20, 30, 40]}, chips_file=None)
    t, _ = median_s(lambda: list(solve_zoo(ten, workers=2)), runs)
    print(f"| growth: one model x 4 targets x 3 contexts, workers=2 | 12 | {t * 1e3:.0f} ms | {12 / t:.0f} |")


#: Pool quotas of the benchmark plans (chips, before scaling), every pool with a 1-year tier.
PLAN_QUOTAS = {
    "tpu-v5e": 1024,
    "tpu-v6e": 512,
    "tpu-v5p": 256,
    "tpu-v4": 256,
    "a100": 128,
    "h100": 128,
    "h200": 128,
    "b200": 64,
}


def plan_file(n_models: int, periods: int, scale: float, path: Path, names: list[str] | None = None) -> Path:
    """n_models entries (the built-in models, then again at looser targets), demand growing 8% a
    period from per-model bases times `scale`, every chip type as a pool (quotas times
    `scale`) with a 1-year commitment at 37% off. `names`: ten other models in place of the
    ten original built-in ones (moe_speed.py's mixtures of experts)."""
    names = names or [
        "llama2-7b",
        "llama2-13b",
        "llama2-70b",
        "llama3-8b",
        "llama3-70b",
        "llama3-405b",
        "mistral-7b",
        "qwen2.5-7b",
        "qwen2.5-72b",
        "gemma-2-27b",
    ]
    bases = [50, 10, 2, 30, 5, 1, 40, 20, 8, 3]
    lines = [f"periods = {periods}", "headroom = 0.2", ""]
    for i in range(n_models):
        name, variant = names[i % len(names)], i // len(names)
        slo = (20, 40, 60)[variant % 3]
        base = bases[i % len(bases)] * (1 + variant) * scale
        demand = [round(base * 1.08**t, 3) for t in range(periods)]
        lines += [
            "[[models]]",
            f'name = "{name}-{slo}ms-{variant}"',
            f'model = "{name}"',
            f"demand_qps = {demand}",
            f"slo_ms = {slo}",
            f"ttft_ms = {slo * 75}",
            "prompt_len = 2048",
            "",
        ]
    for chip, quota in PLAN_QUOTAS.items():
        lines += [
            "[[pools]]",
            f'chip = "{chip}"',
            f"quota_chips = {int(quota * scale)}",
            "[[pools.commitments]]",
            'name = "1-year"',
            f"term_periods = {max(periods, 12)}",
            "discount = 0.37",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def plans(runs: int) -> None:
    """servesat plan: the README example (whole process), and 20 models x the full catalog x 12
    months at two demand scales, with growth in models and periods (time limit 10 s)."""
    import tempfile

    from optimizer.planning import plan

    tmp = Path(tempfile.mkdtemp())
    example = ROOT / "examples" / "plan.toml"
    whole, _ = median_s(process([str(BIN / "servesat"), "plan", str(example)]), runs)
    one = plan(example)
    print("| what | median | status | gap |\n|---|---|---|---|")
    print(f"| servesat plan examples/plan.toml (whole process) | {whole * 1e3:.0f} ms | {one.status} | {one.gap:.2%} |")
    print(
        "\n| plan | offers | variables | time limit | wall time (build + solve), median | gap, median "
        "| gaps of the runs |\n|---|---|---|---|---|---|---|"
    )
    cases = [
        (20, 12, 1.0, 10),
        (20, 12, 10.0, 10),
        (20, 12, 1.0, 30),
        (5, 12, 1.0, 10),
        (10, 12, 1.0, 10),
        (20, 3, 1.0, 10),
        (20, 6, 1.0, 10),
        (40, 12, 10.0, 10),
    ]
    for n_models, periods, scale, limit in cases:
        path = plan_file(n_models, periods, scale, tmp / f"p{n_models}_{periods}_{scale}.toml")
        results = []
        t, _ = median_s(lambda path=path, limit=limit, out=results: out.append(plan(path, time_limit_s=limit)), runs)
        gaps = sorted(r.gap if r.gap is not None else float("nan") for r in results[1:])
        r = results[-1]
        print(
            f"| {n_models} models x 8 pools x {periods} periods, demand x{scale:g} | {r.solve.offers} | "
            f"{r.solve.variables} | {limit} s | {t:.1f} s | {statistics.median(gaps):.2%} | "
            f"{', '.join(f'{g:.2%}' for g in gaps)} |"
        )


if __name__ == "__main__":
    main()
