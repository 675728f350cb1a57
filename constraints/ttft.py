"""Time to first token: one prompt's prefill within the TTFT target (queueing ignored).

    T_prefill = 2*P*T / (Y*C*MFU) <= TTFT

For co-located serving it applies to the decode replica (a row either meets it or not, at
any batch); for disaggregated serving to the prefill server (see constraints.prefill).
Compared in floating point: the row is pruned or kept, no batch coefficient is scaled.
"""

from __future__ import annotations

import numpy as np

from constraints._rows import add_caps
from optimizer.candidates import CandidateTable
from optimizer.scaling import UNBOUNDED
from optimizer.workload import Workload

NAME = "ttft"
add = add_caps


def meets(table: CandidateTable, rows: np.ndarray | slice, workload: Workload) -> np.ndarray:
    """Rows whose replica prefills one prompt within the TTFT target."""
    return table.cost.prefill_s[rows] <= workload.ttft_s


def satisfied(table: CandidateTable, rows: np.ndarray, batch: np.ndarray, workload: Workload) -> np.ndarray:
    if not workload.colocated:
        return np.ones(len(rows), dtype=bool)
    return meets(table, rows, workload)


def batch_caps(table: CandidateTable, workload: Workload) -> np.ndarray:
    if not workload.colocated or workload.ttft_ms is None:
        return np.full(len(table), UNBOUNDED, dtype=np.int64)
    return np.where(meets(table, slice(None), workload), UNBOUNDED, 0).astype(np.int64)


def explain(table: CandidateTable, row: int, batch: int, workload: Workload) -> str:
    return (
        f"the prompt's prefill takes {table.cost.prefill_s[row] * 1e3:.1f} ms of the "
        f"{workload.ttft_ms:g} ms TTFT target"
    )
