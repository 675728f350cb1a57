"""The text of zoo progress and summary; the models and chips listings."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from optimizer.render.text import json_text, table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from optimizer.catalog import Chip
    from optimizer.models import Model


def zoo_solved(solved: int, already: int, total: int, out: str) -> str:
    return f"{solved} scenarios solved, {already} already in {out}; {total} in the zoo"


def zoo_summary(rows: Sequence[dict[str, Any]]) -> str:
    """Per model: the best chip and its $/million tokens over its scenarios, and the failures."""
    lines = []
    for model in dict.fromkeys(str(r["model"]) for r in rows):
        mine = [r for r in rows if str(r["model"]) == model]
        solved = [r for r in mine if r["queries_per_dollar"] is not None]
        best = max(solved, key=lambda r: r["queries_per_dollar"]) if solved else None
        lines.append(
            [
                model,
                str(len(mine)),
                best["chip"] if best else "-",
                f"{best['usd_per_million_tokens']:.3f}" if best else "-",
                str(sum(r["status"] == "infeasible" for r in mine)),
                str(sum(r["status"] == "error" for r in mine)),
            ]
        )
    if not lines:
        return "nothing new to solve"
    return table(["model", "scenarios", "best chip", "best $/Mtok", "infeasible", "errors"], lines)


def model_listing(models: dict[str, Model]) -> list[dict[str, Any]]:
    """Each model's shape, parameter count, KV bytes per token per dtype and source."""
    return [
        {
            "name": name,
            "param_count": m.param_count,
            "active_param_count": m.active_param_count,
            "features": m.features(),
            "layers": m.num_layers,
            "d_model": m.d_model,
            "d_ff": m.d_ff,
            "heads": m.num_heads,
            "kv_heads": m.num_kv_heads,
            "head_dim": m.head_dim,
            "vocab": m.vocab,
            "kv_bytes_per_token": {d: m.kv_bytes_per_token(d) for d in ("bf16", "int8", "int4")},
            "experts": {"routed": m.num_experts, "per_token": m.experts_per_token, "moe_layers": m.moe_layers}
            if m.is_moe
            else None,
            "source": m.source,
        }
        for name, m in models.items()
    ]


def models_json(models: dict[str, Model]) -> str:
    return json_text({"models": model_listing(models)})


def models_table(models: dict[str, Model]) -> str:
    return table(
        ["model", "params", "active", "layers", "kv heads", "KV B/token bf16", "int8", "int4"],
        [
            [
                r["name"],
                f"{r['param_count'] / 1e9:.2f}B",
                f"{r['active_param_count'] / 1e9:.2f}B",
                str(r["layers"]),
                str(r["kv_heads"]),
                f"{r['kv_bytes_per_token']['bf16']:,.0f}",
                f"{r['kv_bytes_per_token']['int8']:,.0f}",
                f"{r['kv_bytes_per_token']['int4']:,.0f}",
            ]
            for r in model_listing(models)
        ],
    )


def chips_json(catalog: dict[str, Chip]) -> str:
    """Every chip's figures (asdict), W_ici, and its prices by tier with their dates and sources."""
    return json_text(
        {
            "chips": [
                {**asdict(c), "ici_bytes_per_s_per_axis": c.ici_bytes_per_s_per_axis, "prices": c.price_tiers()}
                for c in catalog.values()
            ]
        }
    )


def _usd(value: float) -> str:
    return f"{value:.2f}" if value > 0 else "-"


def chips_table(catalog: dict[str, Chip]) -> str:
    """One row per chip: compute, memory, scale-up and scale-out bandwidth, the prices of each
    tier and the date of the on-demand price, the slices; a note on unpriced chips."""
    text = table(
        [
            "chip",
            "bf16 TFLOP/s",
            "fp4 TFLOP/s",
            "HBM GB",
            "HBM GB/s",
            "ICI GB/s/axis",
            "out GB/s",
            "$/chip-h",
            "1y $",
            "3y $",
            "price date",
            "slices",
        ],
        [
            [
                c.name,
                f"{c.bf16_flops / 1e12:,.0f}",
                f"{c.fp4_flops / 1e12:,.0f}" if c.fp4_flops else "-",
                f"{c.hbm_bytes / 1e9:,.0f}",
                f"{c.hbm_bytes_per_s / 1e9:,.0f}",
                f"{c.ici_bytes_per_s_per_axis / 1e9:,.0f}",
                f"{c.scale_out_bytes_per_s / 1e9:,.1f}" if c.scale_out_bytes_per_s else "-",
                _usd(c.usd_per_chip_hour),
                _usd(c.usd_per_chip_hour_1yr),
                _usd(c.usd_per_chip_hour_3yr),
                c.price_date or ("--price" if c.priced else "-"),
                " ".join(c.topologies),
            ]
            for c in catalog.values()
        ],
    )
    notes = [
        "$/chip-h: on demand (what optimize prices by); 1y $, 3y $: committed; out: scale-out per chip, one way",
    ]
    unpriced = [c.name for c in catalog.values() if not c.priced]
    if unpriced:
        notes.append(
            f"no published price: {', '.join(unpriced)} (left out of searches; give --price CHIP=USD or --prices FILE)"
        )
    return "\n".join([text, *notes])
