"""Prefill servers (disaggregated serving): which candidates can serve prompts, and the
coupling between the decode replica and its prefill servers.

A prefill server is a replica of its own candidate (chip, slice, model-parallel axes) that
  - holds the weights and one prompt's KV:   P*b_w + T*kv_token <= Y*M
  - is not comms-bound on the prompt's T tokens (the comms family's inequality at B = T)
  - meets the TTFT target:                     T_prefill <= TTFT
and serves the decode replicas of the same weight and KV dtypes (the KV it writes is the
KV they read). In CP-SAT: for every dtype pair, picked decode candidates == picked prefill
candidates. All comparisons are in floating point; no coefficient is scaled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ortools.sat.python import cp_model

from constraints import comms, ttft
from optimizer.candidates import CandidateTable
from optimizer.workload import Workload

NAME = "prefill"


def prompt_fits(table: CandidateTable, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
    c = table.cost
    return c.weight_bytes[rows] + c.prompt_kv_bytes[rows] <= c.hbm_capacity_bytes[rows]


def server_checks(table: CandidateTable, workload: Workload) -> dict[str, np.ndarray]:
    """Per check, which rows pass it as prefill servers (solver-free, float)."""
    rows = np.arange(len(table))
    tokens = np.full(len(table), workload.prompt_tokens)
    return {
        "hbm": prompt_fits(table),
        "comms": ~comms.comms_bound(table, rows, tokens),
        "ttft": ttft.meets(table, rows, workload),
    }


def server_mask(table: CandidateTable, workload: Workload) -> np.ndarray:
    checks = server_checks(table, workload)
    return checks["hbm"] & checks["comms"] & checks["ttft"]


def add(
    model: cp_model.CpModel,
    pick: Sequence[cp_model.IntVar],
    decode_groups: Sequence[str],
    serve: Sequence[cp_model.IntVar],
    prefill_groups: Sequence[str],
) -> None:
    """For every dtype pair: the decode pick and the prefill pick agree."""
    for group in sorted(set(decode_groups) | set(prefill_groups)):
        d = [p for p, g in zip(pick, decode_groups) if g == group]
        s = [p for p, g in zip(serve, prefill_groups) if g == group]
        model.add(sum(d) == sum(s))


def reason(table: CandidateTable, workload: Workload, mask: np.ndarray) -> str:
    """Why no row under `mask` can be a prefill server."""
    checks = server_checks(table, workload)
    fits = mask & checks["hbm"]
    if not fits.any():
        return f"no prefill server fits the weights and one {workload.prompt_tokens}-token prompt's KV in HBM"
    usable = fits & checks["comms"]
    if not usable.any():
        return "every prefill server that fits the prompt is comms-bound on it"
    if not (usable & checks["ttft"]).any():
        i = int(np.flatnonzero(usable)[np.argmin(table.cost.prefill_s[usable])])
        r = table.row(i)
        return (
            f"the {workload.ttft_ms:g} ms TTFT target is below the fastest prefill of a "
            f"{workload.prompt_tokens}-token prompt on a server that is not comms-bound: "
            f"{table.cost.prefill_s[i] * 1e3:.1f} ms ({r['chip']} {r['topology']}, {r['tp']}-way model parallel)"
        )
    return (
        "no decode configuration that meets the latency target shares its weight and KV dtypes with a "
        "prefill server that meets the TTFT target"
    )
