"""Batch-solving a model zoo: every model x scenario grid, each solved as `optimize` would.

A zoo file (TOML) lists models and a grid; every model x grid combination is one scenario.
Solving them is optimizer.zoo_solve (worker processes or Ray tasks); writing and resuming
output files is optimizer.zoo_output.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimizer.catalog import DTYPES, load_chips, read_toml
from optimizer.errors import InputError, is_positive_int, is_positive_number, unknown_name
from optimizer.profiles import PROFILES
from optimizer.workload import OBJECTIVES, SERVING

#: Grid axes: each takes a list of alternatives (or a single value).
GRID_KEYS = (
    "slo_ms",
    "ttft_ms",
    "context",
    "decode_len",
    "prompt_len",
    "qps",
    "objective",
    "serving",
    "chips",
    "weights",
    "kv",
    "profile",
)
GRID_DEFAULTS: dict[str, list] = {
    "ttft_ms": [None],
    "context": [8192],
    "decode_len": [512],
    "prompt_len": [None],
    "qps": [None],
    "objective": ["queries-per-dollar"],
    "serving": ["disaggregated"],
    "chips": ["all"],
    "weights": ["all"],
    "kv": ["all"],
    "profile": ["book"],
}
MODEL_KEYS = ("name", "path", *GRID_KEYS)
TOP_KEYS = ("models", "grid", "chips_file", "prices", "time_limit_s")
CHUNK = 6

#: Output columns, in order: the scenario's inputs, the outcome, then `best` of optimize --json.
SCENARIO_COLUMNS = [
    "scenario_id",
    "model",
    "slo_ms",
    "ttft_target_ms",
    "context",
    "decode_len",
    "prompt_len",
    "qps",
    "objective",
    "serving",
    "chip_set",
    "weight_set",
    "kv_set",
    "profile",
]
RESULT_COLUMNS = [
    "status",
    "reason",
    "chip",
    "topology",
    "chips",
    "tp",
    "n_axes",
    "attention_dp",
    "ep",
    "pp",
    "nodes",
    "replicas",
    "weights",
    "kv",
    "batch",
    "step_ms",
    "tokens_per_s_per_chip",
    "qps_per_chip",
    "queries_per_dollar",
    "usd_per_million_tokens",
    "usd_per_million_input_tokens",
    "usd_per_million_output_tokens",
    "cost_per_hour",
    "binding",
    "prefill_chip",
    "prefill_topology",
    "prefill_tp",
    "prefill_ms",
    "prefill_servers_per_replica",
    "ttft_ms",
    "step_band_pct",
    "ttft_band_pct",
    "assumed",
    "deployment_status",
    "deployment_cost_per_hour",
    "deployment_qps_capacity",
    "deployment_chips",
]
COLUMNS = SCENARIO_COLUMNS + RESULT_COLUMNS


@dataclass(frozen=True)
class Zoo:
    """A parsed zoo file: model specs (name or config path, with grid overrides) and the grid."""

    models: tuple[dict, ...]
    grid: dict[str, list]
    chips_file: str | None = None
    prices: dict[str, float] = field(default_factory=dict)
    time_limit_s: float = 5.0


def _as_list(key: str, value: Any, origin: str) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise InputError(f"{origin}: {key!r} is an empty list")
    return values


def _check_values(key: str, values: list, origin: str, chips: list[str]) -> None:
    for v in values:
        if key in ("slo_ms", "ttft_ms", "qps") and v is not None:
            if not is_positive_number(v):
                raise InputError(f"{origin}: {key} values must be positive numbers, got {v!r}")
        elif key in ("context", "decode_len", "prompt_len") and v is not None:
            if not is_positive_int(v):
                raise InputError(f"{origin}: {key} values must be positive integers, got {v!r}")
        elif key == "objective" and v not in OBJECTIVES:
            raise unknown_name(f"objective in {origin}", str(v), list(OBJECTIVES))
        elif key == "serving" and v not in SERVING:
            raise unknown_name(f"serving mode in {origin}", str(v), list(SERVING))
        elif key == "profile" and v not in PROFILES:
            raise unknown_name(f"profile in {origin}", str(v), list(PROFILES))
        elif key in ("chips", "weights", "kv") and v != "all":
            valid = chips if key == "chips" else DTYPES
            if v == [] or not isinstance(v, (str, list)):
                raise InputError(f'{origin}: each {key} value must be a name, a list of names or "all", got {v!r}')
            for name in v if isinstance(v, list) else [v]:
                if name not in valid:
                    raise unknown_name(f"{'chip' if key == 'chips' else 'dtype'} in {origin} {key}", str(name), valid)


def _model_spec(index: int, m: Any, path: Path, chips: list[str]) -> dict:
    where = f"{path} models[{index}]"
    if not isinstance(m, dict):
        raise InputError(f"{where}: must be a table with 'name' or 'path'")
    for key in m:
        if key not in MODEL_KEYS:
            raise InputError(f"{where}: unknown key {key!r}; valid: {', '.join(MODEL_KEYS)}")
    if ("name" in m) == ("path" in m):
        raise InputError(f"{where}: give exactly one of 'name' (built-in) or 'path' (config.json)")
    which = "name" if "name" in m else "path"
    if not isinstance(m[which], str) or not m[which].strip():
        raise InputError(f"{where}: {which!r} must be a non-empty string, got {m[which]!r}")
    spec = dict(m)
    if "path" in spec:
        spec["path"] = str((path.parent / spec["path"]).resolve())
    for key in GRID_KEYS:
        if key in spec:
            spec[key] = _as_list(key, spec[key], where)
            _check_values(key, spec[key], where, chips)
    return spec


def _grid(data: dict, path: Path, chips: list[str]) -> dict[str, list]:
    grid_table = data.get("grid", {})
    if not isinstance(grid_table, dict):
        raise InputError(f"{path}: [grid] must be a table")
    for key in grid_table:
        if key not in GRID_KEYS:
            raise InputError(f"{path}: unknown key {key!r} in [grid]; valid: {', '.join(GRID_KEYS)}")
    if "slo_ms" not in grid_table:
        raise InputError(f"{path}: [grid] lacks key 'slo_ms' (the per-token latency targets)")
    grid = {k: _as_list(k, grid_table.get(k, GRID_DEFAULTS.get(k)), f"{path} [grid]") for k in GRID_KEYS}
    for k, values in grid.items():
        _check_values(k, values, f"{path} [grid]", chips)
    return grid


def load_zoo(path: str | Path) -> Zoo:
    """Parse and validate a zoo file; InputError names the bad key or value."""
    path = Path(path)
    data = read_toml(path, "zoo file")
    for key in data:
        if key not in TOP_KEYS:
            raise InputError(f"{path}: unknown key {key!r}; valid: {', '.join(TOP_KEYS)}")
    chips_file = data.get("chips_file")
    if chips_file is not None and not isinstance(chips_file, str):
        raise InputError(f"{path}: chips_file must be a path string, got {chips_file!r}")
    if chips_file is not None:
        chips_file = str((path.parent / chips_file).resolve())
    prices = data.get("prices", {})
    if not isinstance(prices, dict):
        raise InputError(f"{path}: 'prices' must be a table of CHIP = USD")
    chips = sorted(load_chips(chips_file, prices))
    grid = _grid(data, path, chips)
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise InputError(f"{path}: needs at least one [[models]] entry")
    specs = [_model_spec(index, m, path, chips) for index, m in enumerate(models)]
    time_limit = data.get("time_limit_s", 5.0)
    if not is_positive_number(time_limit):
        raise InputError(f"{path}: time_limit_s must be a positive number")
    return Zoo(
        models=tuple(specs), grid=grid, chips_file=chips_file, prices=dict(prices), time_limit_s=float(time_limit)
    )


def _canon(v: Any) -> Any:
    if v == "all" or v is None:
        return None
    return tuple(v) if isinstance(v, list) else (v,) if isinstance(v, str) else v


def _number(v: Any) -> Any:
    """10 and 10.0 are the same target (and the same scenario)."""
    return None if v is None else float(v)


def scenarios(zoo: Zoo) -> list[dict]:
    """Every distinct model x grid combination, in file order, each with a stable scenario_id
    (a combination listed twice is one scenario)."""
    out = []
    seen: set[str] = set()
    for spec in zoo.models:
        model = spec.get("name") or spec["path"]
        axes = [spec.get(k, zoo.grid[k]) for k in GRID_KEYS]
        for combo in itertools.product(*axes):
            s = dict(zip(GRID_KEYS, combo))
            sc = {
                "model": model,
                "slo_ms": _number(s["slo_ms"]),
                "ttft_target_ms": _number(s["ttft_ms"]),
                "context": s["context"],
                "decode_len": s["decode_len"],
                "prompt_len": s["prompt_len"],
                "qps": _number(s["qps"]),
                "objective": s["objective"],
                "serving": s["serving"],
                "chip_set": _canon(s["chips"]),
                "weight_set": _canon(s["weights"]),
                "kv_set": _canon(s["kv"]),
            }
            if s["profile"] != "book":  # book scenarios keep the ids they had before profiles existed
                sc["profile"] = s["profile"]
            key = json.dumps(sc, sort_keys=True, default=list)
            sc.setdefault("profile", "book")
            sc["scenario_id"] = hashlib.sha1(key.encode()).hexdigest()[:16]
            if sc["scenario_id"] not in seen:
                seen.add(sc["scenario_id"])
                out.append(sc)
    return out
