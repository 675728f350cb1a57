"""What is being served: sequence lengths, targets, how prompts are served, demand; validated."""

from __future__ import annotations

import math
from dataclasses import dataclass

from optimizer.errors import InputError

OBJECTIVES = ("queries-per-dollar", "min-chips", "min-latency")
#: How prompts are processed: on separate prefill servers (the chapter's disaggregated
#: serving), on the decode replicas themselves, or not at all (the decode-only roofline).
SERVING = ("disaggregated", "colocated", "decode-only")
#: Cost models: the chapter's roofline, or the roofline with the terms fitted to measured serving.
PROFILES = ("book", "calibrated")


def _positive(name: str, flag: str, value: float | None, *, integer: bool = False, at_most: float | None = None):
    if value is None:
        return
    if integer:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{name} ({flag}) must be a positive integer, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise InputError(f"{name} ({flag}) must be a positive number, got {value!r}")
    if at_most is not None and value > at_most:
        raise InputError(f"{name} ({flag}) must be at most {at_most:g}, got {value!r}")


@dataclass(frozen=True)
class Workload:
    """Context S (KV length per sequence at the end of decoding), decode length G, prompt
    length T (default S - G: the prompt and the generated tokens make up the context),
    per-token latency target, time-to-first-token target, prefill MFU, serving mode."""

    context: int = 8192
    decode_len: int = 512
    slo_ms: float | None = None
    prompt_len: int | None = None
    prefill_mfu: float = 0.4
    ttft_ms: float | None = None
    serving: str = "disaggregated"
    profile: str = "book"
    engine: str | None = None  # calibrated profile: the serving engine (default: the parameters' default)
    calibration: str | None = None  # calibrated profile: a parameter file (default: the built-in one)

    def __post_init__(self) -> None:
        _positive("context", "--context", self.context, integer=True)
        _positive("decode_len", "--decode-len", self.decode_len, integer=True)
        _positive("slo_ms", "--slo-ms", self.slo_ms)
        _positive("prompt_len", "--prompt-len", self.prompt_len, integer=True)
        _positive("prefill_mfu", "--prefill-mfu", self.prefill_mfu, at_most=1.0)
        _positive("ttft_ms", "--ttft-ms", self.ttft_ms)
        if self.serving not in SERVING:
            raise InputError(f"unknown serving mode {self.serving!r}; valid: {', '.join(SERVING)}")
        if self.profile not in PROFILES:
            raise InputError(f"unknown profile {self.profile!r}; valid: {', '.join(PROFILES)}")
        if self.profile == "book" and (self.engine is not None or self.calibration is not None):
            raise InputError("--engine and --calibration apply to --profile calibrated only")
        if self.prompt_len is None and self.context <= self.decode_len and self.serving != "decode-only":
            raise InputError(
                f"the default prompt length is context - decode_len, and context {self.context} "
                f"is not above decode_len {self.decode_len}: give --prompt-len"
            )

    @property
    def slo_s(self) -> float:
        return math.inf if self.slo_ms is None else self.slo_ms / 1e3

    @property
    def ttft_s(self) -> float:
        return math.inf if self.ttft_ms is None else self.ttft_ms / 1e3

    @property
    def prompt_tokens(self) -> int:
        return self.prompt_len if self.prompt_len is not None else max(self.context - self.decode_len, 1)

    @property
    def colocated(self) -> bool:
        return self.serving == "colocated"

    @property
    def prefill_servers(self) -> bool:
        return self.serving == "disaggregated"
