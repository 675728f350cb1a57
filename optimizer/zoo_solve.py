"""Solving a zoo's scenarios: chunks of one model's scenarios in worker processes (or Ray
tasks), each worker loading the catalog and the model once and reusing the enumerated
candidates (optimizer.candidates.candidate_rows) across the model's scenarios. Rows come back
as they finish; writers append and flush them, so a killed run loses only the chunks in flight.

Workers never outlive the run: at most one per chunk and per core, and each exits when the
process that started it is gone (SIGKILL included), by the kernel's parent-death signal on
Linux and a watchdog thread everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from optimizer.catalog import load_chips
from optimizer.errors import InputError, check_positive_int, unknown_name
from optimizer.models import load_model
from optimizer.profiles import resolve_profile
from optimizer.workload import Workload
from optimizer.zoo import CHUNK, COLUMNS, Zoo, load_zoo, scenarios

#: How often a worker's watchdog checks that the process that started it is alive (seconds).
WATCHDOG_S = 0.2
PR_SET_PDEATHSIG = 1


@functools.lru_cache(maxsize=8)
def _catalog(chips_file: str | None, prices: tuple[tuple[str, float], ...]):
    return load_chips(chips_file, dict(prices))


@functools.lru_cache(maxsize=64)
def _model(name_or_path: str):
    """Once per worker process (chunks of one model reuse it)."""
    return load_model(name_or_path)


def _row(sc: dict, result: Any = None, error: str | None = None) -> dict:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in sc.items()})
    if error is not None:
        row.update(status="error", reason=error)
        return row
    row.update(status=result.status, reason=result.reason)
    b = result.best
    if b is not None:
        for k in (
            "chip",
            "topology",
            "chips",
            "tp",
            "n_axes",
            "attention_dp",
            "ep",
            "pp",
            "nodes",
            "replicas",
            "weights",
            "kv",
            "batch",
            "step_ms",
            "tokens_per_s_per_chip",
            "qps_per_chip",
            "queries_per_dollar",
            "usd_per_million_tokens",
            "usd_per_million_input_tokens",
            "usd_per_million_output_tokens",
            "cost_per_hour",
            "prefill_servers_per_replica",
            "ttft_ms",
        ):
            row[k] = getattr(b, k)
        row["binding"] = "+".join(b.binding)
        if result.uncertainty is not None:  # None under the book profile: a bound has no band
            row.update(step_band_pct=result.uncertainty["step_pct"], ttft_band_pct=result.uncertainty["ttft_pct"])
        row["assumed"] = "; ".join(result.assumed) or None
        if b.prefill is not None:
            row.update(
                prefill_chip=b.prefill.chip,
                prefill_topology=b.prefill.topology,
                prefill_tp=b.prefill.tp,
                prefill_ms=b.prefill.prefill_ms,
            )
    d = result.deployment
    if d is not None:
        row.update(
            deployment_status=d.status,
            deployment_cost_per_hour=d.cost_per_hour if d.decode else None,
            deployment_qps_capacity=d.qps_capacity if d.decode else None,
            deployment_chips=d.total_chips if d.decode else None,
        )
    return row


def solve_chunk(
    chips_file: str | None, prices: tuple[tuple[str, float], ...], time_limit_s: float, chunk: list[dict]
) -> list[dict]:
    """Solve scenarios of one model (in a worker process or a Ray task); errors become rows."""
    from optimizer.api import Search, optimize

    try:
        catalog = _catalog(chips_file, prices)
        model = _model(chunk[0]["model"])
    except (InputError, OSError) as e:
        return [_row(sc, error=str(e)) for sc in chunk]
    rows = []
    for sc in chunk:
        try:
            workload = Workload(
                context=sc["context"],
                decode_len=sc["decode_len"],
                slo_ms=sc["slo_ms"],
                prompt_len=sc["prompt_len"],
                ttft_ms=sc["ttft_target_ms"],
                serving=sc["serving"],
            )
            result = optimize(
                model,
                workload,
                profile=resolve_profile(sc["profile"]),
                search=Search(catalog, sc["chip_set"], sc["weight_set"], sc["kv_set"]),
                objective=sc["objective"],
                top=1,
                qps=sc["qps"],
                time_limit_s=time_limit_s,
                alternatives=False,
            )
            rows.append(_row(sc, result))
        except InputError as e:
            rows.append(_row(sc, error=str(e)))
        except Exception as e:  # a scenario that fails must not stop the zoo: it becomes a row
            rows.append(_row(sc, error=f"{type(e).__name__}: {e}"))
    return rows


def _chunks(todo: list[dict]) -> list[list[dict]]:
    out: list[list[dict]] = []
    for _, group in itertools.groupby(todo, key=lambda s: s["model"]):
        g = list(group)
        out += [g[i : i + CHUNK] for i in range(0, len(g), CHUNK)]
    return out


def solve_zoo(
    zoo: Zoo | str | Path,
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    skip: Iterable[str] = (),
) -> Iterator[dict]:
    """Yield one row per scenario as it finishes (scenario_ids in `skip` are not solved).

    backend "local": `workers` processes (1: in this process); "ray": Ray tasks on the
    cluster at `address` (default: a local Ray instance), `pip install servesat[ray]`.
    """
    zoo = load_zoo(zoo) if not isinstance(zoo, Zoo) else zoo
    check_positive_int("workers", workers)
    if backend not in ("local", "ray"):
        raise unknown_name("backend", backend, ["local", "ray"])
    skipped = set(skip)
    todo = [s for s in scenarios(zoo) if s["scenario_id"] not in skipped]
    args = (zoo.chips_file, tuple(sorted(zoo.prices.items())), zoo.time_limit_s)
    chunks = _chunks(todo)
    workers = min(workers, len(chunks), os.cpu_count() or 1)
    if backend == "ray":
        yield from _ray_rows(args, chunks, address)
    elif workers <= 1:
        for chunk in chunks:
            yield from solve_chunk(*args, chunk)
    else:
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("fork"), initializer=_die_with, initargs=(os.getpid(),)
        )
        with pool:
            order = {pool.submit(solve_chunk, *args, chunk): k for k, chunk in enumerate(chunks)}
            pending = set(order)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(done, key=order.__getitem__):  # chunks finished together: in submission order
                    yield from f.result()


def _ray_rows(args: tuple, chunks: list[list[dict]], address: str | None) -> Iterator[dict]:
    try:
        import ray
    except ImportError:
        raise InputError("the ray backend needs Ray: pip install 'servesat[ray]'") from None
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"RAY_DEDUP_LOGS": "0"}} if address is None else None,
        )
    task: Any = ray.remote(solve_chunk)
    pending = [task.remote(*args, chunk) for chunk in chunks]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            yield from ray.get(ref)


def _die_with(parent: int) -> None:
    """Pool initializer: end this worker as soon as `parent` (the run) is gone."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):  # else the watchdog below still ends the worker
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_S)
        os._exit(1)

    threading.Thread(target=watch, name="servesat-parent-watchdog", daemon=True).start()
