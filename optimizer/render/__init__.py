"""The text the command line prints: pure functions from result objects to strings.

One module per command family (optimize, frontier, listings, plan, calibration, launch); every
function is re-exported here, so the command line writes `render.optimize_result(r)`.

One function per result type (and per message a command prints); no click, no printing, no
I/O, so each can be tested on its own and the command line only parses, calls and echoes.
JSON output is the results' own to_dict() (or the listings built here), indented by two.
"""

from __future__ import annotations

from optimizer.render.calibration import calibration, calibration_json, validation
from optimizer.render.frontier import (
    batch_points,
    by_batch_title,
    caveat_lines,
    cheapest_label,
    cheapest_marks,
    frontier_points,
    frontier_title,
    no_batches,
    no_frontier,
    none_within,
    points_file,
    points_json,
    points_text,
    wrote,
)
from optimizer.render.launch import launch_files, launch_text
from optimizer.render.listings import (
    chips_json,
    chips_table,
    model_listing,
    models_json,
    models_table,
    zoo_solved,
    zoo_summary,
)
from optimizer.render.optimize import (
    comparison,
    configuration_row,
    deployment,
    evaluation,
    optimize_header,
    optimize_result,
    optimum_label,
    optimum_plot_title,
)
from optimizer.render.plan import fleet_plan, plan_entry
from optimizer.render.text import json_text, table

__all__ = [
    "batch_points",
    "by_batch_title",
    "calibration",
    "calibration_json",
    "caveat_lines",
    "cheapest_label",
    "cheapest_marks",
    "chips_json",
    "chips_table",
    "comparison",
    "configuration_row",
    "deployment",
    "evaluation",
    "fleet_plan",
    "frontier_points",
    "frontier_title",
    "json_text",
    "launch_files",
    "launch_text",
    "model_listing",
    "models_json",
    "models_table",
    "no_batches",
    "no_frontier",
    "none_within",
    "optimize_header",
    "optimize_result",
    "optimum_label",
    "optimum_plot_title",
    "plan_entry",
    "points_file",
    "points_json",
    "points_text",
    "table",
    "validation",
    "wrote",
    "zoo_solved",
    "zoo_summary",
]
