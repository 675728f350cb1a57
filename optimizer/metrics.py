"""Throughput and cost of candidates at a batch, from the book-profile terms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.candidates import CandidateTable

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Metrics:
    """Arrays aligned with the rows they were computed for."""

    step_s: np.ndarray
    tokens_per_s_per_chip: np.ndarray  # B / (T_step * Y)
    qps_per_chip: np.ndarray  # B / (T_step * G * Y)
    queries_per_dollar: np.ndarray  # 3600 * B / (T_step * G * Y * price)
    usd_per_million_tokens: np.ndarray  # output tokens


def measure(table: CandidateTable, rows: np.ndarray, batch: np.ndarray, decode_len: int) -> Metrics:
    c = table.cost
    b = np.asarray(batch, dtype=float)
    step = c.step_s(b, rows)
    tok_per_chip = b / (step * table.tp[rows])
    price = table.usd_per_chip_hour[rows]
    return Metrics(
        step_s=step,
        tokens_per_s_per_chip=tok_per_chip,
        qps_per_chip=tok_per_chip / decode_len,
        queries_per_dollar=SECONDS_PER_HOUR * tok_per_chip / (decode_len * price),
        usd_per_million_tokens=price * 1e6 / (SECONDS_PER_HOUR * tok_per_chip),
    )
