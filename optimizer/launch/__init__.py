"""From a plan to running servers: `launch()` optimizes as `optimize()` does, then turns the
answer into the serving engine's commands and Kubernetes manifests (docs/launch.md).

    from optimizer.launch import launch
    plan = launch("llama3-8b", Workload(slo_ms=20), engine="vllm", search=Search(chips=["h100"]))
    plan.commands[0]["argv"]   # ["vllm", "serve", "meta-llama/Meta-Llama-3-8B", ...]
    plan.to_dict()             # exactly `servesat launch --json`

Names load on first use (PEP 562), so the command line reads the engine names and formats
(optimizer.launch.engines) without importing the solver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "launch": "optimizer.launch.api",
    "write_files": "optimizer.launch.api",
    "LaunchPlan": "optimizer.launch.result",
    "ServerGroup": "optimizer.launch.servers",
    "ENGINES": "optimizer.launch.engines",
    "FORMATS": "optimizer.launch.engines",
    "load_engine": "optimizer.launch.engines",
}
__all__ = ["ENGINES", "FORMATS", "LaunchPlan", "ServerGroup", "launch", "load_engine", "write_files"]

if TYPE_CHECKING:
    from optimizer.launch.api import launch, write_files
    from optimizer.launch.engines import ENGINES, FORMATS, load_engine
    from optimizer.launch.result import LaunchPlan
    from optimizer.launch.servers import ServerGroup


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'optimizer.launch' has no attribute {name!r}")
