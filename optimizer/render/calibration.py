"""The text of calibrate and validate: fitted parameters, errors per group."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from optimizer.render.text import json_text, table

if TYPE_CHECKING:
    from pathlib import Path

    from optimizer.calibrated import CalibratedParams
    from optimizer.calibration import Validation
    from optimizer.measurements import Measurements


def calibration(params: CalibratedParams, check: Validation, data: Path | str, m: Measurements, out: str) -> str:
    """calibrate's report: what was fitted to what, the parameters, the in-sample errors."""
    chips = table(
        ["chip", "HBM", "decode FLOP/s", "prefill FLOP/s", "link", "fitted"],
        [
            [
                n,
                f"{c.hbm_efficiency:.3f}",
                f"{c.flops_efficiency:.3f}",
                f"{c.prefill_efficiency:.3f}",
                f"{c.link_efficiency:.3f}",
                "no (assumed)" if c.assumed else "yes",
            ]
            for n, c in sorted(params.chips.items())
        ],
    )
    engines = table(
        [
            "engine",
            "step overhead ms",
            "per-sequence us",
            "per-layer us",
            "per-MoE-layer us",
            "admission steps",
            "dequant eff",
            "KV wait in TTFT",
            "fitted",
        ],
        [
            [
                n,
                f"{e.step_overhead_s * 1e3:.3f}",
                f"{e.seq_overhead_s * 1e6:.2f}",
                f"{e.layer_overhead_s * 1e6:.2f}",
                f"{e.moe_layer_overhead_s * 1e6:.2f}",
                f"{e.admission_steps:.1f}",
                f"{e.dequant_efficiency:.3f}",
                f"{e.kv_wait_in_ttft:.3f}",
                "no (assumed)" if e.assumed else "yes",
            ]
            for n, e in sorted(params.engines.items())
        ],
    )
    return "\n".join(
        [
            f"fitted to {len(m)} rows of {data} ({len(m.skipped)} skipped); written to {out}",
            f"collective latency  {params.collective_latency_s * 1e6:.2f} us per collective, "
            f"{params.hop_latency_s * 1e6:.2f} us per torus hop (assumed)",
            "efficiencies (fractions of each peak, all in (0, 1]):",
            chips,
            engines,
            f"in-sample MAPE: TPOT {check.overall['tpot_mape']:.2f}%, TTFT {check.overall['ttft_mape']:.2f}%",
        ]
    )


def calibration_json(params: CalibratedParams, check: Validation, out: str, warnings: list[str]) -> str:
    data = {"params": asdict(params), "in_sample": check.overall, "skipped": check.skipped, "out": out}
    return json_text({**data, "warnings": warnings})


def _errors(s: dict[str, Any]) -> list[str]:
    """Rows, TPOT MAPE and TTFT MAPE of a validation summary."""
    return [str(s["n"]), f"{s['tpot_mape']:.1f}%", f"{s['ttft_mape']:.1f}%"]


def validation(v: Validation, data: str, m: Measurements) -> str:
    """validate's report: the errors per group and overall, leave-one-model-out, skipped lines."""
    summary = [[g["model"], g["system"], g["engine"], g["precision"], *_errors(g)] for g in v.groups]
    lines = [
        f"{v.profile} profile on {data}: {len(m)} rows, {len(m.skipped)} skipped",
        table(
            ["model", "system", "engine", "precision", "rows", "TPOT MAPE", "TTFT MAPE"],
            [*summary, ["all", "", "", "", *_errors(v.overall)]],
        ),
    ]
    if v.engines:
        lines += [
            "\nPer engine:",
            table(["engine", "rows", "TPOT MAPE", "TTFT MAPE"], [[g["engine"], *_errors(g)] for g in v.engines]),
        ]
    if v.leave_one_model_out is not None:
        lines += [
            "\nLeave one model out (fit without it, predict it):",
            table(
                ["held out", "rows", "TPOT MAPE", "TTFT MAPE"],
                [[r["model"], *_errors(r)] for r in v.leave_one_model_out],
            ),
            "Pooled by kind (each row still predicted by a fit without its model):",
            table(
                ["models", "rows", "TPOT MAPE", "TTFT MAPE"],
                [[r["models"], *_errors(r)] for r in v.leave_one_model_out_pooled or []],
            ),
        ]
    if v.chip_order and v.chip_order["pairs"]:
        lines.append(
            f"\nChip ordering: on {v.chip_order['pairs']} matched pairs of runs on two chips, the faster chip "
            f"is predicted faster in {v.chip_order['agree_pct']:.1f}% (at most "
            f"{v.chip_order['ceiling_pct']:.1f}% for any model: repeated runs of one configuration disagree on "
            "which chip is faster, and a model orders them all one way):",
        )
        lines.append(
            table(
                ["chips", "pairs", "predicted right", "at most", "median measured gap"],
                [
                    [
                        p["chips"],
                        str(p["pairs"]),
                        f"{p['agree_pct']:.1f}%",
                        f"{p['ceiling_pct']:.1f}%",
                        f"{p['median_measured_gap_pct']:.1f}%",
                    ]
                    for p in v.chip_order["by_chips"]
                ],
            )
        )
    lines += [f"skipped line {s['line']}: {s['reason']}" for s in v.skipped]
    return "\n".join(lines)
