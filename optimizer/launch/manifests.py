"""Kubernetes objects (plain dicts) for each server group: a Deployment when a server fits on
one node, a LeaderWorkerSet when it spans several (a multi-host TPU slice), a ConfigMap for
an engine's config file, and one Service per role in front of the serving pods. A server over
several nodes (a multi-host TPU slice, a multi-node GPU replica) is one LeaderWorkerSet group:
its pods find the first through $(LWS_LEADER_ADDRESS) and know their index as
$(LWS_WORKER_INDEX), which the kubelet expands in the commands."""

from __future__ import annotations

import re
import shlex
from typing import Any

from optimizer.launch.commands import CONFIG_DIR, PORT, leader_setup
from optimizer.launch.engines import read_data
from optimizer.launch.servers import ServerGroup

LWS_API = "leaderworkerset.x-k8s.io/v1"
#: The label every pod that answers HTTP carries (a Deployment's pods, a LeaderWorkerSet's
#: leaders), so a role's Service reaches servers and never a worker node.
SERVES = "servesat/serves"
#: The Secret (optional) whose `token` key becomes HF_TOKEN, for gated Hugging Face models.
HF_SECRET = "hf-token"


def base_name(model: str, engine: str) -> str:
    """A DNS-1035 label prefix: lowercase letters, digits and dashes, starting with a letter."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"{model}-{engine}".lower()).strip("-")
    name = name if name[:1].isalpha() else f"m-{name}"
    return name[:40].rstrip("-")


def _labels(base: str, g: ServerGroup) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "servesat",
        "app.kubernetes.io/instance": base,
        "app.kubernetes.io/component": g.role,
        "servesat/workload": f"{base}-{g.name}",
    }


def _container(g: ServerGroup, image: str, command: list[str], serves: bool) -> dict[str, Any]:
    resource = read_data("kubernetes")["resources"][g.family]
    c: dict[str, Any] = {
        "name": "engine",
        "image": image,
        "command": command,
        "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": HF_SECRET, "key": "token",
                                                                    "optional": True}}}],
        "resources": {"requests": {resource: str(g.chips_per_node)}, "limits": {resource: str(g.chips_per_node)}},
        # Tensor-parallel workers share tensors through /dev/shm, which a container caps at 64 MiB.
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }  # fmt: skip
    if serves:
        c["ports"] = [{"name": "http", "containerPort": PORT}]
        c["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
    if g.files and serves:
        c["workingDir"] = "/"
        c["volumeMounts"].append({"name": "config", "mountPath": f"/{CONFIG_DIR}", "readOnly": True})
    return c


def _pod(base: str, g: ServerGroup, image: str, command: list[str], serves: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [_container(g, image, command, serves)],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    if g.family == "tpu":
        accelerator = read_data("kubernetes")["tpu"][g.chip]["accelerator"]
        spec["nodeSelector"] = {
            "cloud.google.com/gke-tpu-accelerator": accelerator,
            "cloud.google.com/gke-tpu-topology": g.topology,
        }
    if g.files and serves:
        spec["volumes"].append({"name": "config", "configMap": {"name": f"{base}-{g.name}-config"}})
    labels = _labels(base, g) | ({SERVES: "true"} if serves else {})
    return {"metadata": {"labels": labels}, "spec": spec}


def workload(base: str, g: ServerGroup, image: str) -> list[dict[str, Any]]:
    """The group's objects: its ConfigMap (if the engine reads a config file), then its
    Deployment or LeaderWorkerSet."""
    name = f"{base}-{g.name}"
    meta = {"name": name, "labels": _labels(base, g)}
    out: list[dict[str, Any]] = []
    if g.files:
        data = {path.rsplit("/", 1)[-1]: text for path, text in g.files.items()}
        config_meta = {**meta, "name": f"{name}-config"}
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": config_meta, "data": data})
    if g.nodes == 1:
        out.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": g.servers, "selector": {"matchLabels": {"servesat/workload": name}},
                     "template": _pod(base, g, image, g.argv, serves=True)},
        })  # fmt: skip
        return out
    setup = leader_setup(g)  # Ray's head before the engine; none when every node runs the engine with its rank
    leader = ["sh", "-c", f"{shlex.join(setup)} && exec {shlex.join(g.argv)}"] if setup else list(g.argv)
    out.append({
        "apiVersion": LWS_API, "kind": "LeaderWorkerSet", "metadata": meta,
        "spec": {
            "replicas": g.servers,
            "leaderWorkerTemplate": {
                "size": g.nodes,
                # One host of a slice failing takes the whole server down; restart the group.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": _pod(base, g, image, leader, serves=True),
                "workerTemplate": _pod(base, g, image, list(g.worker_argv or []), serves=False),
            },
        },
    })  # fmt: skip
    return out


def service(base: str, role: str) -> dict[str, Any]:
    """The role's Service: every serving pod of the role, on port 8000."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{base}-{role}", "labels": {"app.kubernetes.io/name": "servesat",
                                                          "app.kubernetes.io/instance": base,
                                                          "app.kubernetes.io/component": role}},
        "spec": {
            "selector": {"app.kubernetes.io/instance": base, "app.kubernetes.io/component": role, SERVES: "true"},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }  # fmt: skip


def by_group(base: str, groups: list[ServerGroup], images: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Each group's objects by group name, the role's Service with the role's first group."""
    out: dict[str, list[dict[str, Any]]] = {}
    roles: set[str] = set()
    for g in groups:
        objects = workload(base, g, images[g.name])
        if g.role not in roles:
            roles.add(g.role)
            objects.append(service(base, g.role))
        out[g.name] = objects
    return out
