"""HBM capacity: weights and the KV caches of the batch fit in the replica's HBM.

    P*b_w + B*S*kv_token <= Y*M                      (bytes)

(Y: every chip of the replica; pipeline stages split weights and KV caches by layer, evenly.)

Scaled to half-bytes (int4 is half a byte), usage rounded up and capacity down; with the
catalog's whole-byte figures the integer row is exact.
"""

from __future__ import annotations

import numpy as np

from constraints._rows import add_caps, verified_caps
from optimizer.candidates import CandidateTable
from optimizer.scaling import BYTE_UNITS_PER_BYTE, batch_cap, capacity_int, usage_int
from optimizer.workload import Workload

NAME = "hbm"
add = add_caps


def satisfied(table: CandidateTable, rows: np.ndarray, batch: np.ndarray, workload: Workload) -> np.ndarray:
    c = table.cost
    used = c.weight_bytes[rows] + np.asarray(batch, dtype=float) * c.kv_bytes_per_seq[rows]
    return used <= c.hbm_capacity_bytes[rows]


def batch_caps(table: CandidateTable, workload: Workload) -> np.ndarray:
    c = table.cost
    coef = usage_int(c.kv_bytes_per_seq, BYTE_UNITS_PER_BYTE)
    rhs = capacity_int(c.hbm_capacity_bytes, BYTE_UNITS_PER_BYTE) - usage_int(c.weight_bytes, BYTE_UNITS_PER_BYTE)
    return verified_caps(batch_cap(coef, rhs), lambda r, b: satisfied(table, r, b, workload))


def explain(table: CandidateTable, row: int, batch: int, workload: Workload) -> str:
    c = table.cost
    y, nodes = int(table.tp[row]), int(table.nodes[row])
    where = f" ({nodes} nodes of {y // nodes})" if nodes > 1 else ""
    return (
        f"batch {batch} is capped by HBM: the weights take {c.weight_bytes[row] / 1e9:.1f} GB of "
        f"the {c.hbm_capacity_bytes[row] / 1e9:.0f} GB on {y} chip{'s' if y != 1 else ''}{where}, leaving room "
        f"for the KV caches of {batch} sequence{'s' if batch != 1 else ''} of {workload.context} tokens "
        f"({c.kv_bytes_per_seq[row] / 1e9:.2f} GB each)"
    )
