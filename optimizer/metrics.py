"""Throughput and cost of candidates, from the cost terms their table carries (either profile)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.candidates import CandidateTable

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Metrics:
    """Decode-replica figures, arrays aligned with the rows they were computed for."""

    step_s: np.ndarray
    tokens_per_s_per_chip: np.ndarray  # B / (T_step * Y)
    qps_per_chip: np.ndarray  # B / (T_step * G * Y)
    queries_per_dollar: np.ndarray  # 3600 * B / (T_step * G * Y * price)
    usd_per_query: np.ndarray  # the inverse
    usd_per_million_tokens: np.ndarray  # output tokens


def measure(table: CandidateTable, rows: np.ndarray, batch: np.ndarray, decode_len: int) -> Metrics:
    b = np.asarray(batch, dtype=float)
    step = table.cost.step_s(b, rows)
    tok_per_chip = b / (step * table.tp[rows])
    price = table.usd_per_chip_hour[rows]
    qpd = SECONDS_PER_HOUR * tok_per_chip / (decode_len * price)
    return Metrics(
        step_s=step,
        tokens_per_s_per_chip=tok_per_chip,
        qps_per_chip=tok_per_chip / decode_len,
        queries_per_dollar=qpd,
        usd_per_query=1.0 / qpd,
        usd_per_million_tokens=price * 1e6 / (SECONDS_PER_HOUR * tok_per_chip),
    )


def prefill_usd_per_query(table: CandidateTable, rows: np.ndarray) -> np.ndarray:
    """A prefill server's cost per prompt: Y * price * T_prefill / 3600."""
    return table.tp[rows] * table.usd_per_chip_hour[rows] * table.cost.prefill_s[rows] / SECONDS_PER_HOUR
