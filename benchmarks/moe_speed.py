"""Zoo and plan speed with mixture-of-experts models in them (issue 13's last target: "zoo and
plan speed stay within 2x of today's per scenario with MoE models in the zoo"). Not part of
the test suite. From the repository root:

    git worktree add /tmp/before c22798c        # the code before the MoE work (issue 13)
    .venv/bin/python benchmarks/moe_speed.py --rounds 7 --before /tmp/before
    git worktree remove /tmp/before

Every measurement runs in a fresh process (`--worker`) with the code under test first on
PYTHONPATH (this checkout, or --before's), from a scratch folder; each round runs every
variant once (rotating the order), so old and new code share the machine's load; medians are
over the rounds. A worker warms up once (the first scenario of each model, or one plan) and then
times `--runs` passes. Prints Markdown tables; the recorded results live in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The dense zoo benchmarks already use: examples/zoo.toml's 10 models.
DENSE = [
    "llama3-8b",
    "llama3-70b",
    "llama3-405b",
    "llama2-7b",
    "llama2-13b",
    "llama2-70b",
    "mistral-7b",
    "qwen2.5-7b",
    "qwen2.5-72b",
    "gemma-2-27b",
]
#: Every built-in mixture of experts (issue 13's catalog and the later additions).
MOE = [
    "deepseek-v3",
    "deepseek-r1",
    "deepseek-v3.2",
    "kimi-k2",
    "kimi-k2.5",
    "qwen3-235b-a22b",
    "qwen3-30b-a3b",
    "qwen3-coder-480b",
    "qwen3.5-35b-a3b",
    "qwen3.5-397b-a17b",
    "gpt-oss-120b",
    "gpt-oss-20b",
    "minimax-m2.5",
    "llama4-maverick",
    "llama4-scout",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "glm-5",
]
#: The 8 chips searched before the 2026 catalog (issue 14): the old code's whole catalog.
CHIPS_2025 = ["a100", "b200", "h100", "h200", "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e"]
#: examples/zoo.toml's grid: 4 latency targets x 3 contexts.
SLOS = [10, 15, 25, 50]
CONTEXTS = [2048, 8192, 32768]
#: The examples/plan.toml models swapped for mixtures of experts (same demand, targets, pools).
PLAN_MOE_SWAP = {"llama3-8b": "mixtral-8x7b", "llama3-70b": "qwen3-235b-a22b", "llama3-405b": "deepseek-v3"}
#: Ten mixtures of experts for generated plans (bench.py's plan_file, these names instead).
PLAN_MOE = [
    "mixtral-8x7b",
    "gpt-oss-20b",
    "qwen3-30b-a3b",
    "gpt-oss-120b",
    "llama4-scout",
    "mixtral-8x22b",
    "qwen3-235b-a22b",
    "minimax-m2.5",
    "llama4-maverick",
    "deepseek-v3",
]


# ---------------------------------------------------------------- workers (fresh processes)


def _worker_zoo(job: dict) -> dict:
    from optimizer.zoo import load_zoo
    from optimizer.zoo_solve import solve_zoo

    z = load_zoo(job["path"])
    warm = replace(z, grid={**z.grid, "slo_ms": z.grid["slo_ms"][:1], "context": z.grid["context"][:1]})
    list(solve_zoo(warm, workers=job["workers"]))
    wall, cpu, statuses = [], [], {}
    for _ in range(job["runs"]):
        t, c = time.perf_counter(), time.process_time()
        rows = list(solve_zoo(z, workers=job["workers"]))
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        statuses = {}
        for r in rows:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {"wall": wall, "cpu": cpu, "scenarios": len(rows), "statuses": statuses}


def _worker_plan(job: dict) -> dict:
    from optimizer.catalog import load_chips
    from optimizer.planning import plan
    from optimizer.planning.offers import build_offers
    from optimizer.planning.plan_file import load_plan
    from optimizer.planning.spec import resolve

    plan(job["path"], time_limit_s=job["time_limit_s"])  # warm-up
    wall, offers_s, results = [], [], []
    for _ in range(job["runs"]):
        t = time.perf_counter()
        results.append(plan(job["path"], time_limit_s=job["time_limit_s"]))
        wall.append(time.perf_counter() - t)
        t = time.perf_counter()
        build_offers(resolve(load_plan(job["path"]), load_chips()))
        offers_s.append(time.perf_counter() - t)
    r = results[-1]
    return {
        "wall": wall,
        "offers_s": offers_s,
        "status": r.status,
        "gaps": [x.gap for x in results],
        "offers": r.solve.offers,
        "variables": r.solve.variables,
    }


def _worker_models(job: dict) -> dict:
    """Per model: the zoo grid's scenarios of that model alone (ms each), and its candidates."""
    from optimizer import load_chips, load_model
    from optimizer.candidates import build_table
    from optimizer.profiles import Book
    from optimizer.workload import Workload
    from optimizer.zoo import load_zoo
    from optimizer.zoo_solve import solve_zoo

    out = {}
    chips = load_chips()
    for name in job["names"]:
        path = Path(job["dir"]) / f"one-{name}.toml"
        path.write_text(_zoo_text([name], SLOS, CONTEXTS))
        z = load_zoo(path)
        warm = replace(z, grid={**z.grid, "slo_ms": z.grid["slo_ms"][:1], "context": z.grid["context"][:1]})
        list(solve_zoo(warm, workers=1))
        t = time.perf_counter()
        rows = list(solve_zoo(z, workers=1))
        per = (time.perf_counter() - t) / len(rows)
        w = Workload(context=8192, decode_len=512, slo_ms=25)
        out[name] = {"ms": per * 1e3, "candidates": len(build_table(load_model(name), chips, w, Book()))}
    return out


WORKERS = {"zoo": _worker_zoo, "plan": _worker_plan, "models": _worker_models}


# ---------------------------------------------------------------- inputs


def _zoo_text(names: list[str], slos: list, contexts: list, chips: list[str] | None = None) -> str:
    grid = f"[grid]\nslo_ms = {slos}\ncontext = {contexts}\n"
    if chips is not None:
        grid += f"chips = [{json.dumps(chips)}]\n"
    return grid + "".join(f'[[models]]\nname = "{m}"\n' for m in names)


def _inputs(tmp: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import plan_file  # text only: the old code reads the same files

    files = {}
    for label, names in (("dense", DENSE), ("moe", MOE), ("mixed", DENSE + MOE)):
        files[f"zoo-{label}"] = tmp / f"zoo-{label}.toml"
        files[f"zoo-{label}"].write_text(_zoo_text(names, SLOS, CONTEXTS))
        files[f"zoo-{label}-2025"] = tmp / f"zoo-{label}-2025.toml"
        files[f"zoo-{label}-2025"].write_text(_zoo_text(names, SLOS, CONTEXTS, CHIPS_2025))
    for n_slo in (1, 12):
        slos = [round(10 + 40 * k / max(n_slo - 1, 1), 3) for k in range(n_slo)]
        files[f"zoo-mixed-x{n_slo}"] = tmp / f"zoo-mixed-x{n_slo}.toml"
        files[f"zoo-mixed-x{n_slo}"].write_text(_zoo_text(DENSE + MOE, slos, CONTEXTS))
    example = (ROOT / "examples" / "plan.toml").read_text()
    files["plan-example"] = tmp / "plan-example.toml"
    files["plan-example"].write_text(example)
    moe = example
    for dense, expert in PLAN_MOE_SWAP.items():
        moe = moe.replace(f'model = "{dense}"', f'model = "{expert}"')
    files["plan-example-moe"] = tmp / "plan-example-moe.toml"
    files["plan-example-moe"].write_text(moe)
    for periods in (3, 6):
        files[f"plan-20x{periods}"] = plan_file(20, periods, 1.0, tmp / f"plan-20x{periods}.toml")
        files[f"plan-20x{periods}-moe"] = plan_file(20, periods, 1.0, tmp / f"plan-20x{periods}-moe.toml", PLAN_MOE)
    return files


# ---------------------------------------------------------------- orchestration


def _run(code: Path, job: dict, cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _interleaved(variants: list[tuple[str, Path, dict]], rounds: int, cwd: Path) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {label: [] for label, _, _ in variants}
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for label, code, job in order:
            results[label].append(_run(code, job, cwd))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


def _med(results: list[dict], key: str) -> float:
    return statistics.median(x for res in results for x in res[key])


def zoo_tables(files: dict[str, Path], before: Path | None, rounds: int, runs: int, workers: int, tmp: Path) -> None:
    def job(name: str) -> dict:
        return {"kind": "zoo", "path": str(files[name]), "workers": workers, "runs": runs}

    variants = []
    if before is not None:
        variants.append(("before: dense zoo", before, job("zoo-dense")))
    variants += [
        ("today: dense zoo", ROOT, job("zoo-dense")),
        ("today: dense zoo, 2025 chips", ROOT, job("zoo-dense-2025")),
        ("today: MoE zoo", ROOT, job("zoo-moe")),
        ("today: MoE zoo, 2025 chips", ROOT, job("zoo-moe-2025")),
        ("today: dense + MoE zoo", ROOT, job("zoo-mixed")),
    ]
    res = _interleaved(variants, rounds, tmp)
    ref = None
    if before is not None:
        b = res["before: dense zoo"]
        ref = _med(b, "cpu" if workers == 1 else "wall") / b[0]["scenarios"]
    cpu = workers == 1
    print(f"\nzoo, solve_zoo(workers={workers}) in process; medians of {rounds} rounds x {runs} run(s)\n")
    head = "| zoo | scenarios | statuses | wall, median | ms/scenario (wall) |"
    head += " ms/scenario (CPU) |" if cpu else ""
    head += " per scenario vs before's dense zoo |" if ref else ""
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for label, _, _ in variants:
        rs = res[label]
        n = rs[0]["scenarios"]
        wall = _med(rs, "wall")
        line = f"| {label} | {n} | {', '.join(f'{k} {v}' for k, v in rs[0]['statuses'].items())} | "
        line += f"{wall * 1e3:.0f} ms | {wall / n * 1e3:.1f} |"
        if cpu:
            line += f" {_med(rs, 'cpu') / n * 1e3:.1f} |"
        if ref:
            mine = (_med(rs, "cpu") if cpu else wall) / n
            line += f" {mine / ref:.2f}x |"
        print(line)


def growth_table(files: dict[str, Path], rounds: int, tmp: Path) -> None:
    variants = [
        (
            f"today: dense + MoE x {n} targets x 3 contexts",
            ROOT,
            {"kind": "zoo", "path": str(files[key]), "workers": 1, "runs": 1},
        )
        for n, key in ((1, "zoo-mixed-x1"), (4, "zoo-mixed"), (12, "zoo-mixed-x12"))
    ]
    res = _interleaved(variants, rounds, tmp)
    print(f"\nzoo growth, solve_zoo(workers=1); medians of {rounds} rounds\n")
    print("| zoo | scenarios | wall, median | ms/scenario (wall) | ms/scenario (CPU) |\n|---|---|---|---|---|")
    for label, _, _ in variants:
        rs = res[label]
        n = rs[0]["scenarios"]
        wall = _med(rs, "wall")
        print(f"| {label} | {n} | {wall * 1e3:.0f} ms | {wall / n * 1e3:.1f} | {_med(rs, 'cpu') / n * 1e3:.1f} |")


def models_table(before: Path | None, rounds: int, tmp: Path) -> None:
    variants = []
    if before is not None:
        variants.append(("before", before, {"kind": "models", "names": DENSE, "dir": str(tmp)}))
    variants.append(("today", ROOT, {"kind": "models", "names": DENSE + MOE, "dir": str(tmp)}))
    res = _interleaved(variants, rounds, tmp)
    print(f"\nper model: its 12 scenarios alone, solve_zoo(workers=1), ms each; medians of {rounds} rounds\n")
    print(
        "| model | candidates before (8k, 25 ms) | candidates today | ms/scenario before | ms/scenario today | "
        "today vs before's dense mean |\n|---|---|---|---|---|---|"
    )
    base = None
    if before is not None:
        base = statistics.mean(statistics.median(r[m]["ms"] for r in res["before"]) for m in DENSE)
    for m in DENSE + MOE:
        today = statistics.median(r[m]["ms"] for r in res["today"])
        cand = res["today"][0][m]["candidates"]
        if before is not None and m in DENSE:
            old = statistics.median(r[m]["ms"] for r in res["before"])
            oc = res["before"][0][m]["candidates"]
            print(f"| {m} | {oc} | {cand} | {old:.1f} | {today:.1f} | {today / base:.1f}x |")
        else:
            ratio = f"{today / base:.1f}x" if base else ""
            print(f"| {m} | | {cand} | | {today:.1f} | {ratio} |")


def plan_tables(files: dict[str, Path], before: Path | None, rounds: int, runs: int, tmp: Path) -> None:
    def job(name: str) -> dict:
        return {"kind": "plan", "path": str(files[name]), "runs": runs, "time_limit_s": 10.0}

    variants = []
    # (label, plan file, model entries, the dense plan of the same size it is compared with)
    pairs = (
        ("examples/plan.toml (3 dense models, 12 months)", "plan-example", 3, "plan-example"),
        ("same, 3 MoE models instead", "plan-example-moe", 3, "plan-example"),
        ("20 dense models x 8 pools x 3 periods", "plan-20x3", 20, "plan-20x3"),
        ("20 MoE models x 8 pools x 3 periods", "plan-20x3-moe", 20, "plan-20x3"),
        ("20 dense models x 8 pools x 6 periods", "plan-20x6", 20, "plan-20x6"),
        ("20 MoE models x 8 pools x 6 periods", "plan-20x6-moe", 20, "plan-20x6"),
    )
    for label, key, _, ref in pairs:
        if before is not None and key == ref:
            variants.append((f"before: {label}", before, job(key)))
        variants.append((f"today: {label}", ROOT, job(key)))
    res = _interleaved(variants, rounds, tmp)
    entries = {label: n for label, _, n, _ in pairs}
    refs = {label: next(f"before: {lb}" for lb, k, _, _ in pairs if k == ref) for label, _, _, ref in pairs}
    print(f"\nplan(time_limit_s=10) in process; medians of {rounds} rounds x {runs} run(s)\n")
    print(
        "| plan | status | gap, median | offers | variables | wall, median | offers built, median | "
        "ms per model entry | vs before (same size, dense) |\n|---|---|---|---|---|---|---|---|---|"
    )
    for label, _, _ in variants:
        rs = res[label]
        plain = label.split(": ", 1)[1]
        n = entries[plain]
        wall = _med(rs, "wall")
        gap = statistics.median(g if g is not None else float("nan") for r in rs for g in r["gaps"])
        note = ""
        if before is not None and label.startswith("today"):
            note = f"{wall / _med(res[refs[plain]], 'wall'):.2f}x"
        print(
            f"| {label} | {rs[0]['status']} | {gap:.2%} | {rs[0]['offers']} | {rs[0]['variables']} | "
            f"{wall * 1e3:.0f} ms | {_med(rs, 'offers_s') * 1e3:.0f} ms | {wall / n * 1e3:.1f} | {note} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians over them)")
    parser.add_argument("--runs", type=int, default=1, help="timed passes per worker after its warm-up")
    parser.add_argument("--workers", type=int, default=1, help="solve_zoo workers (1: serial, CPU time reported)")
    parser.add_argument("--before", type=Path, help="a checkout of the code before the MoE work (c22798c)")
    parser.add_argument("--zoo-only", action="store_true")
    parser.add_argument("--plan-only", action="store_true")
    parser.add_argument("--models", action="store_true", help="also per model (12 scenarios each)")
    parser.add_argument("--growth", action="store_true", help="also the dense + MoE zoo at 1, 4, 12 targets")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(WORKERS[job.pop("kind")](job)))
        return
    before = args.before.resolve() if args.before else None
    tmp = Path(tempfile.mkdtemp(prefix="moe_speed-"))
    files = _inputs(tmp)
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start")
    if not args.plan_only:
        zoo_tables(files, before, args.rounds, args.runs, args.workers, tmp)
        if args.models:
            models_table(before, args.rounds, tmp)
        if args.growth:
            growth_table(files, max(1, args.rounds // 2), tmp)
    if not args.zoo_only:
        plan_tables(files, before, args.rounds, args.runs, tmp)


if __name__ == "__main__":
    main()
