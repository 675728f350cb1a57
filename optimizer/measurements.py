"""Measured serving runs (the calibration schema): reading, checking and holding them.

Used by `calibrate` and `validate` (optimizer.calibration) and by the tests; the optimizer
itself never reads measurements.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from optimizer.calibrated import PRECISION_BYTES
from optimizer.catalog import Chip, read_text
from optimizer.errors import InputError
from optimizer.models import Model, load_model

#: The measurement file's GPU names; servesat's own chip names are accepted as well.
SYSTEM_NAMES = {
    "h100_sxm": "h100",
    "h200_sxm": "h200",
    "b200_sxm": "b200",
    "b300_sxm": "b300",
    "a100_sxm": "a100",
    "gb200": "gb200",
    "gb300": "gb300",
}
#: Optional columns of mixture-of-experts runs (blank or absent: 1); tp_size is then the
#: attention tensor parallelism of one of attention_dp_size groups, and
#: tp_size * attention_dp_size = moe_tp_size * moe_ep_size GPUs serve one replica.
MOE_COLUMNS = ("attention_dp_size", "moe_tp_size", "moe_ep_size")

COLUMNS = (
    "backend",
    "model_path",
    "system",
    "precision",
    "mode",
    "isl",
    "osl",
    "batch_size",
    "tp_size",
    "pp_size",
    "silicon_ttft_ms",
    "silicon_tpot_ms",
)


@dataclass
class Measurements:
    """Rows of a calibration CSV that servesat can model, as arrays, plus the skipped ones."""

    rows: list[dict[str, str]]  # the kept rows, as read
    model: list[Model]
    chip: list[Chip]
    engine: np.ndarray
    precision: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    clients: np.ndarray  # batch_size: concurrent requests of the load generator
    tp: np.ndarray  # attention tensor parallelism (the whole replica for a dense model)
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    attention_dp: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ep: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # each kept row's line in the file

    def __post_init__(self) -> None:
        if len(self.attention_dp) != len(self.rows):
            self.attention_dp = np.ones(len(self.rows))
        if len(self.ep) != len(self.rows):
            self.ep = np.ones(len(self.rows))
        if len(self.lines) != len(self.rows):
            self.lines = np.zeros(len(self.rows), np.int64)

    @property
    def chips_per_replica(self) -> np.ndarray:
        """Y = tp * attention_dp."""
        return self.tp * self.attention_dp

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, mask: np.ndarray) -> Measurements:
        idx = np.flatnonzero(mask)
        pick = idx.tolist()
        return Measurements(
            [self.rows[i] for i in pick],
            [self.model[i] for i in pick],
            [self.chip[i] for i in pick],
            self.engine[idx],
            self.precision[idx],
            self.isl[idx],
            self.osl[idx],
            self.clients[idx],
            self.tp[idx],
            self.ttft_s[idx],
            self.tpot_s[idx],
            [],
            self.attention_dp[idx],
            self.ep[idx],
            self.lines[idx],
        )

    @property
    def model_names(self) -> np.ndarray:
        return np.array([m.name for m in self.model])

    @property
    def chip_names(self) -> np.ndarray:
        return np.array([c.name for c in self.chip])


def bundled_data() -> Path:
    return Path(str(resources.files("optimizer").joinpath("data/runs.csv")))


def read_csv_rows(path: str | Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header holding `columns`; every row must have as many
    fields as the header, and quotes must close: InputError names the first line that does not."""
    text = read_text(path, "data file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: empty; expected a header with {', '.join(columns)}")
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(f"{path}: missing column {missing[0]!r}; the schema has {', '.join(columns)}")
        start = reader.line_num + 1
        for fields in reader:
            if fields and len(fields) != len(header):
                raise InputError(
                    f"{path}: line {start} has {len(fields)} fields, the header {len(header)}"
                    + ("; a quote may be unterminated" if "\n" in "".join(fields) else "")
                )
            if fields:
                rows.append((start, dict(zip(header, fields))))
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(f"{path}: line {start}: not valid CSV ({e}; a quote may be unterminated)") from None
    return rows


def _moe_split(r: dict[str, str], model: Model, tp: float) -> list[float] | str:
    """[attention_dp, ep] of a row (1 and 1 for a dense model or absent columns), or why the
    row's split cannot be modelled."""
    if not model.is_moe:
        return [1.0, 1.0]
    try:
        dp, moe_tp, ep = (float(r.get(c) or 1) for c in MOE_COLUMNS)
    except ValueError:
        return "a parallelism column is not a number"
    dp, moe_tp, ep = (v if v > 0 else 1.0 for v in (dp, moe_tp, ep))
    if tp * dp != moe_tp * ep:
        return f"tp_size x attention_dp_size ({tp:g} x {dp:g}) is not moe_tp_size x moe_ep_size ({moe_tp:g} x {ep:g})"
    if model.num_experts % ep:
        return f"moe_ep_size {ep:g} does not divide the {model.num_experts} experts"
    return [dp, ep]


def load_measurements(path: str | Path, chips: dict[str, Chip]) -> Measurements:
    """Read a CSV in the calibration schema; rows servesat cannot model are skipped with a reason."""
    raw = read_csv_rows(path, COLUMNS)
    kept: list[dict[str, str]] = []
    models: list[Model] = []
    chip_list: list[Chip] = []
    skipped: list[tuple[int, str]] = []
    numbers: list[list[float]] = []
    kept_lines: list[int] = []
    loaded: dict[str, Model] = {}  # one Model per model_path: the step terms compute once per model
    for line, r in raw:
        system = SYSTEM_NAMES.get(r["system"], r["system"])
        try:
            if r["model_path"] not in loaded:
                loaded[r["model_path"]] = load_model(r["model_path"])
            model = loaded[r["model_path"]]
        except InputError:
            skipped.append((line, f"unknown model {r['model_path']!r}"))
            continue
        if system not in chips:
            skipped.append((line, f"unknown system {r['system']!r}"))
            continue
        if r["precision"] not in PRECISION_BYTES:
            skipped.append((line, f"unknown precision {r['precision']!r}"))
            continue
        if r["mode"] != "agg":
            skipped.append((line, f"mode {r['mode']!r}: only agg (prefill and decode on the same GPUs) is modelled"))
            continue
        try:
            values = [
                float(r[c])
                for c in ("isl", "osl", "batch_size", "tp_size", "pp_size", "silicon_ttft_ms", "silicon_tpot_ms")
            ]
        except ValueError:
            skipped.append((line, "a number column is not a number"))
            continue
        if values[4] != 1:
            skipped.append((line, f"pipeline parallelism {r['pp_size']} is not modelled"))
            continue
        if min(values) <= 0 or not all(math.isfinite(v) for v in values):
            skipped.append((line, "a number column is not positive"))
            continue
        split = _moe_split(r, model, values[3])
        if isinstance(split, str):
            skipped.append((line, split))
            continue
        values += split
        kept_lines.append(line)
        kept.append(r)
        models.append(model)
        chip_list.append(chips[system])
        numbers.append(values)
    a = np.array(numbers, dtype=float).reshape(-1, 9)
    return Measurements(
        kept,
        models,
        chip_list,
        np.array([r["backend"] for r in kept], dtype=str),
        np.array([r["precision"] for r in kept], dtype=str),
        a[:, 0],
        a[:, 1],
        a[:, 2],
        a[:, 3],
        a[:, 5] / 1e3,
        a[:, 6] / 1e3,
        skipped,
        a[:, 7],
        a[:, 8],
        np.array(kept_lines, dtype=np.int64),
    )
