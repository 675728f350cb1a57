"""What is being served: sequence lengths, latency targets, how prompts are served; validated."""

from __future__ import annotations

import math
from dataclasses import dataclass

from optimizer.errors import InputError, check_positive_int, check_positive_number

OBJECTIVES = ("queries-per-dollar", "min-chips", "min-latency")
#: How prompts are processed: on separate prefill servers (the chapter's disaggregated
#: serving), on the decode replicas themselves, or not at all (the decode-only roofline).
SERVING = ("disaggregated", "colocated", "decode-only")


@dataclass(frozen=True)
class Workload:
    """Context S (KV length per sequence at the end of decoding), decode length G, prompt
    length T (default S - G: the prompt and the generated tokens make up the context),
    per-token latency target, time-to-first-token target, serving mode. What is served, not
    how it is costed: that is the profile (optimizer.profiles)."""

    context: int = 8192
    decode_len: int = 512
    slo_ms: float | None = None
    prompt_len: int | None = None
    ttft_ms: float | None = None
    serving: str = "disaggregated"

    def __post_init__(self) -> None:
        check_positive_int("context (--context)", self.context)
        check_positive_int("decode_len (--decode-len)", self.decode_len)
        for name, flag, value in (("slo_ms", "--slo-ms", self.slo_ms), ("ttft_ms", "--ttft-ms", self.ttft_ms)):
            if value is not None:
                check_positive_number(f"{name} ({flag})", value)
        if self.prompt_len is not None:
            check_positive_int("prompt_len (--prompt-len)", self.prompt_len)
        if self.serving not in SERVING:
            raise InputError(f"unknown serving mode {self.serving!r}; valid: {', '.join(SERVING)}")
        if self.context < self.decode_len:
            raise InputError(
                f"context (--context) {self.context} is below decode_len (--decode-len) {self.decode_len}: "
                "the context is the KV length at the end of decoding, every generated token included"
            )
        if self.serving == "decode-only" and self.ttft_ms is not None:
            raise InputError(
                f"ttft_ms (--ttft-ms) {self.ttft_ms!r} is a time-to-first-token target, and decode-only "
                "serving ignores prompts: drop one of them"
            )
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
