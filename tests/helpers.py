"""Flat-keyword wrappers over the API for tests that sweep many options at once: each builds
the Workload, the profile and the Search the way the CLI does from its flags."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from optimizer.api import Search, evaluate, optimize
from optimizer.profiles import resolve_profile
from optimizer.workload import Workload

WORKLOAD_KEYS = ("context", "decode_len", "prompt_len", "ttft_ms", "serving")


def profile_of(kw: dict[str, Any]):
    return resolve_profile(
        kw.pop("profile", "book"),
        engine=kw.pop("engine", None),
        calibration=kw.pop("calibration", None),
        prefill_mfu=kw.pop("prefill_mfu", None),
    )


def solve(model: Any, slo_ms: float, **kw: Any):
    """optimize() with the options spelled as flat keywords (chips, chip_names, weights, kv,
    context, decode_len, prompt_len, ttft_ms, serving, profile, engine, calibration, prefill_mfu,
    max_nodes, and optimize()'s own keywords)."""
    workload = Workload(slo_ms=slo_ms, **{k: kw.pop(k) for k in WORKLOAD_KEYS if k in kw})
    profile = profile_of(kw)
    search = Search(kw.pop("chips", None), kw.pop("chip_names", None), kw.pop("weights", None), kw.pop("kv", None))
    if "max_nodes" in kw:
        search = replace(search, max_nodes=kw.pop("max_nodes"))
    return optimize(model, workload, profile=profile, search=search, **kw)


def evaluate_one(model: Any, chip: str, topology: str, **kw: Any):
    """evaluate() with flat keywords (context, decode_len, prompt_len, profile, engine, ...)."""
    workload = Workload(serving="decode-only", **{k: kw.pop(k) for k in WORKLOAD_KEYS if k in kw})
    profile = profile_of(kw)
    return evaluate(model, workload, profile=profile, chip=chip, topology=topology, **kw)
