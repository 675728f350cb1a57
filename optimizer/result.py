"""Results: plain dataclasses that serialize to the --json output."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PrefillServer:
    """The prefill-server configuration of a disaggregated deployment."""

    chip: str
    topology: str
    chips: int
    tp: int  # Y: chips of one replica (a stage of tp/pp: attention split tp/pp/attention_dp ways)
    n_axes: int
    attention_dp: int  # d: attention groups the batch is split over (1: none)
    ep: int  # e: expert parallelism, chips the routed experts are spread over (1: none)
    pp: int  # pipeline stages (1: none); each stage is tp/pp chips inside one node
    nodes: int  # scale-up domains one replica spans (HGX/AMD nodes, NVL72 racks; 1: one)
    replicas: int  # prefill servers per slice
    weights: str
    kv: str
    prefill_ms: float  # one prompt
    cost_per_hour: float  # the slice


@dataclass
class Configuration:
    """One chosen configuration: a slice of `chips` running `replicas` replicas of `tp` chips,
    and (disaggregated serving) the prefill servers that feed them."""

    chip: str
    topology: str
    chips: int
    tp: int  # Y: chips of one replica (a stage of tp/pp: attention split tp/pp/attention_dp ways)
    n_axes: int
    attention_dp: int  # d: attention groups the batch is split over (1: none)
    ep: int  # e: expert parallelism, chips the routed experts are spread over (1: none)
    pp: int  # pipeline stages (1: none); each stage is tp/pp chips inside one node
    nodes: int  # scale-up domains one replica spans (HGX/AMD nodes, NVL72 racks; 1: one)
    replicas: int
    weights: str
    kv: str
    batch: int
    step_ms: float
    breakdown_ms: dict[str, float]
    tokens_per_s_per_chip: float  # decode replica: output tokens per second per chip
    qps_per_chip: float  # decode replica: queries per second per chip
    queries_per_dollar: float  # the objective: decode and prefill cost together
    usd_per_million_tokens: float  # all tokens (prompt + output); output only when decode-only
    usd_per_million_input_tokens: float | None  # the prefill share, per prompt token
    usd_per_million_output_tokens: float  # the decode share, per output token
    cost_per_hour: float  # the decode slice
    hbm_used_bytes: float
    hbm_bytes: float
    binding: list[str]
    explanation: str
    serving: str
    prefill: PrefillServer | None  # disaggregated serving only
    prefill_servers_per_replica: float | None  # exact ratio (disaggregated)
    prefill_ratio: str | None  # smallest whole ratio within 5%, "prefill servers:decode replicas"
    ttft_ms: float | None  # one prompt's prefill, queueing ignored
    decode_queries_per_dollar: float  # the decode replica alone


@dataclass
class DeploymentEntry:
    """Slices of one configuration in a demand-sized deployment."""

    role: str  # "decode" or "prefill"
    chip: str
    topology: str
    chips: int  # per slice
    tp: int  # Y: chips of one replica (a stage of tp/pp: attention split tp/pp/attention_dp ways)
    n_axes: int
    attention_dp: int  # d: attention groups the batch is split over (1: none)
    ep: int  # e: expert parallelism, chips the routed experts are spread over (1: none)
    pp: int  # pipeline stages (1: none); each stage is tp/pp chips inside one node
    nodes: int  # scale-up domains one replica spans (HGX/AMD nodes, NVL72 racks; 1: one)
    weights: str
    kv: str
    slices: int
    replicas: int  # decode replicas (role decode) in all these slices
    servers: int  # prefill servers (role prefill) in all these slices
    batch: int | None  # decode batch per replica
    step_ms: float | None
    prefill_ms: float | None
    qps_per_slice: float  # queries (decode) or prompts (prefill) per second per slice
    cost_per_hour: float  # all these slices


@dataclass
class Deployment:
    """The cheapest whole deployment serving `qps` (demand mode)."""

    qps: float
    status: str  # optimal / feasible (time limit; see gap) / infeasible
    reason: str | None
    decode: list[DeploymentEntry]
    prefill: list[DeploymentEntry]
    cost_per_hour: float
    cost_per_month: float  # 730 hours
    qps_capacity: float  # queries per second the deployment can serve (decode and prefill)
    headroom_qps: float
    headroom_pct: float
    total_chips: int
    seconds: float
    gap: float  # relative gap between the plan's cost and the proven lower bound


@dataclass
class SolveStats:
    seconds: float  # the whole optimize() call: table, models, every solve (and demand, compare)
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
    serving: str = "disaggregated"
    prompt_len: int | None = None
    ttft_target_ms: float | None = None
    deployment: Deployment | None = None
    comparison: dict[str, Any] | None = None  # --compare-colocated
    notes: list[str] = field(default_factory=list)
    # calibrated profile: every predicted step, TTFT and cost is within +-these percentages
    # (leave-one-model-out mean absolute error); None under the book profile (a bound)
    uncertainty: dict[str, float] | None = None
    # calibrated profile: the chips and engine of the answer whose parameters are priors, not
    # fitted to measured runs (each with what the prior rests on); empty under the book profile
    assumed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evaluation:
    """The roofline of one fixed configuration (`servesat evaluate`)."""

    model: str
    chip: str
    topology: str
    chips: int
    tp: int  # Y: chips of one replica (a stage of tp/pp: attention split tp/pp/attention_dp ways)
    n_axes: int
    attention_dp: int  # d: attention groups the batch is split over (1: none)
    ep: int  # e: expert parallelism, chips the routed experts are spread over (1: none)
    pp: int  # pipeline stages (1: none); each stage is tp/pp chips inside one node
    nodes: int  # scale-up domains one replica spans (HGX/AMD nodes, NVL72 racks; 1: one)
    replicas: int
    weights: str
    kv: str
    batch: int
    context: int
    decode_len: int
    param_count: int
    param_bytes: float
    kv_bytes_per_token: float
    kv_bytes_per_sequence: float  # one sequence at the context and KV dtype, one copy
    kv_bytes: float  # the batch's KV caches on one replica
    hbm_bytes: float  # HBM of one replica (Y * M)
    hbm_free_bytes: float  # HBM left for KV caches after the weights
    hbm_used_bytes: float
    fits: bool
    max_batch: int  # largest batch whose KV caches fit
    step_ms: float
    breakdown_ms: dict[str, float]
    critical_batch: float | None  # None: the step never turns compute-bound (calibrated profile)
    comms_bound: bool
    tokens_per_s: float  # whole slice
    tokens_per_s_per_chip: float
    qps_per_chip: float
    queries_per_dollar: float
    usd_per_million_tokens: float
    cost_per_hour: float
    prompt_len: int
    prefill_mfu: float | None  # book profile; the calibrated profile prefills at its fitted rate
    prefill_ms: float  # one prompt on a replica of this configuration
    prompt_fits: bool  # weights and one prompt's KV fit on a replica
    prefill_servers_per_replica: float  # servers of this configuration per decode replica
    profile: str = "book"
    uncertainty: dict[str, float] | None = None  # calibrated: the band (%) of step and TTFT
    assumed: list[str] = field(default_factory=list)  # calibrated: parameters that are priors (in words)
    notes: list[str] = field(default_factory=list)  # calibrated: a batch past the measured concurrency

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
