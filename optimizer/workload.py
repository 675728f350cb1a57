"""What is being served: sequence lengths and the latency target, validated."""

from __future__ import annotations

import math
from dataclasses import dataclass

from optimizer.errors import InputError

OBJECTIVES = ("queries-per-dollar", "min-chips", "min-latency")


@dataclass(frozen=True)
class Workload:
    """Context S (KV length per sequence), decode length G, per-token latency target."""

    context: int = 8192
    decode_len: int = 512
    slo_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("context", "decode_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"{name} (--{name.replace('_', '-')}) must be a positive integer, got {value!r}")
        if self.slo_ms is not None and not (self.slo_ms > 0 and math.isfinite(self.slo_ms)):
            raise InputError(f"slo_ms (--slo-ms) must be a positive number of milliseconds, got {self.slo_ms!r}")

    @property
    def slo_s(self) -> float:
        return math.inf if self.slo_ms is None else self.slo_ms / 1e3
