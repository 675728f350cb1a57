"""Results: plain dataclasses that serialize to the --json output."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Configuration:
    """One chosen configuration: a slice of `chips` running `replicas` replicas of `tp` chips."""

    chip: str
    topology: str
    chips: int
    tp: int
    n_axes: int
    replicas: int
    weights: str
    kv: str
    batch: int
    step_ms: float
    breakdown_ms: dict[str, float]
    tokens_per_s_per_chip: float
    qps_per_chip: float
    queries_per_dollar: float
    usd_per_million_tokens: float
    cost_per_hour: float
    hbm_used_bytes: float
    hbm_bytes: float
    binding: list[str]
    explanation: str


@dataclass
class SolveStats:
    seconds: float  # building and solving the CP-SAT model(s), winner and alternatives
    candidates: int  # rows of the candidate table
    feasible_candidates: int  # rows that serve at batch 1 under every family
    solver_status: str
    solves: int


@dataclass
class OptimizeResult:
    status: str  # optimal / feasible / infeasible
    reason: str | None
    model: str
    objective: str
    context: int
    decode_len: int
    slo_ms: float | None
    best: Configuration | None
    runners_up: list[Configuration]
    alternatives: list[Configuration]  # the best configuration of each other chip type
    unserved: dict[str, str]  # chip -> why no configuration of it serves
    solve: SolveStats
    profile: str = "book"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evaluation:
    """The roofline of one fixed configuration (`servesat evaluate`)."""

    model: str
    chip: str
    topology: str
    chips: int
    tp: int
    n_axes: int
    replicas: int
    weights: str
    kv: str
    batch: int
    context: int
    decode_len: int
    param_count: int
    param_bytes: float
    kv_bytes_per_token: float
    kv_bytes: float  # the batch's KV caches on one replica
    hbm_bytes: float  # HBM of one replica (Y * M)
    hbm_free_bytes: float  # HBM left for KV caches after the weights
    hbm_used_bytes: float
    fits: bool
    max_batch: int  # largest batch whose KV caches fit
    step_ms: float
    breakdown_ms: dict[str, float]
    critical_batch: float
    comms_bound: bool
    tokens_per_s: float  # whole slice
    tokens_per_s_per_chip: float
    qps_per_chip: float
    queries_per_dollar: float
    usd_per_million_tokens: float
    cost_per_hour: float
    profile: str = "book"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
