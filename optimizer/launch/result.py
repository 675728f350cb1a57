"""What `launch` answers: the plan, the engine commands and the Kubernetes objects, serialized
as `servesat launch --json` prints them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from optimizer.launch.commands import leader_setup
from optimizer.launch.servers import ServerGroup


@dataclass
class LaunchPlan:
    """The optimize answer turned into servers to start (status "infeasible": nothing to start,
    `reason` says why)."""

    engine: str
    engine_version: str
    engine_source: str  # where the engine's flag table was read, and when
    model: str
    model_id: str | None  # what the engine loads (Hugging Face id or folder)
    status: str
    reason: str | None
    serving: str
    profile: str
    format: str
    qps: float | None
    plan: dict[str, Any] | None  # the optimum: chip, topology, chips, tp, ep, batch, ...
    servers: list[ServerGroup] = field(default_factory=list)
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # group name -> its objects
    notes: list[str] = field(default_factory=list)
    # the optimum's caveats (optimize's): the calibrated band, and the parameters that are priors
    uncertainty: dict[str, float] | None = None
    assumed: list[str] = field(default_factory=list)

    @property
    def commands(self) -> list[dict[str, Any]]:
        """One entry per server group: its role and the engine command every server runs."""
        return [
            {
                "role": g.role,
                "name": g.name,
                "argv": g.argv,
                "servers": g.servers,
                "nodes": g.nodes,
                "leader_setup": leader_setup(g) or None,
                "worker_argv": g.worker_argv,
                "files": g.files,
                "servers_per_node": g.servers_per_node,
                "node_commands": g.node_commands,
            }
            for g in self.servers
        ]

    @property
    def manifests(self) -> list[dict[str, Any]]:
        """Every Kubernetes object, group by group."""
        return [o for objects in self.objects.values() for o in objects]

    def server_dict(self, g: ServerGroup) -> dict[str, Any]:
        """A group's plan values (its commands are under `commands`)."""
        skip = ("argv", "worker_argv", "files", "node_commands")
        return {k: v for k, v in asdict(g).items() if k not in skip}

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "engine_version": self.engine_version,
            "engine_source": self.engine_source,
            "model": self.model,
            "model_id": self.model_id,
            "status": self.status,
            "reason": self.reason,
            "serving": self.serving,
            "profile": self.profile,
            "format": self.format,
            "qps": self.qps,
            "plan": self.plan,
            "servers": [self.server_dict(g) for g in self.servers],
            "commands": self.commands,
            "manifests": self.manifests,
            "notes": self.notes,
            "uncertainty": self.uncertainty,
            "assumed": self.assumed,
        }
