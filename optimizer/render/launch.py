"""The text of `servesat launch`: engine commands as a shell script, or Kubernetes manifests
as YAML documents; one file per server group for --out."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.launch.commands import leader_setup
from optimizer.launch.yamltext import to_yaml
from optimizer.render.text import plural

if TYPE_CHECKING:
    from optimizer.launch.result import LaunchPlan
    from optimizer.launch.servers import ServerGroup


def _header(p: LaunchPlan) -> list[str]:
    lines = [f"# {p.model} ({p.model_id}) on {p.engine} {p.engine_version}: {p.serving} serving, {p.profile} profile"]
    if p.qps is not None:
        lines.append(f"# deployment for {p.qps:g} queries/s")
    lines += [f"# note: {n}" for n in p.notes]
    if p.uncertainty is not None:
        band = p.uncertainty
        step, prefill = band["step_pct"], band["ttft_pct"]
        lines.append(f"# band: the plan's step ±{step:.0f}%, TTFT ±{prefill:.0f}% (calibrated profile)")
    lines += [f"# assumed: {a}" for a in p.assumed]
    return lines


def _group_line(g: ServerGroup) -> str:
    where = "one node" if g.nodes == 1 else f"{g.nodes} nodes of {g.chips_per_node}"
    replicas = f", {g.dp} replicas each" if g.dp > 1 else ""
    split = (f", pp {g.pp}" if g.pp > 1 else "") + (f", attention dp {g.attention_dp}" if g.attention_dp > 1 else "")
    split += f", ep {g.ep}" if g.ep > 1 else ""
    side = f", {g.servers_per_node} per node" if g.servers_per_node > 1 else ""
    return (
        f"# {g.name}: {g.servers} {plural(g.servers, 'server')} of {g.chips} {g.chip} {plural(g.chips, 'chip')} "
        f"(slice {g.topology}, tp {g.tp}{split}, on {where}{replicas}{side}), batch {g.batch}, {g.weights}/{g.kv}, "
        f"memory fraction {g.memory_fraction:.2f}"
    )


#: The LeaderWorkerSet's variables in a command, as a shell on the nodes spells them.
SHELL_VARIABLES = {"$(LWS_LEADER_ADDRESS)": "$LEADER_ADDRESS", "$(LWS_WORKER_INDEX)": "$NODE_RANK"}


def _word(token: str) -> str:
    """A shell word: quoted, or double-quoted with the LeaderWorkerSet's variables as shell ones."""
    if "$(LWS_" not in token:
        return shlex.quote(token)
    for lws, shell in SHELL_VARIABLES.items():
        token = token.replace(lws, shell)
    return f'"{token}"'


def _command(argv: list[str]) -> str:
    """The program and model on the first line, then one flag and its value per line."""
    head, rest = [], list(argv)
    while rest and not rest[0].startswith("--"):
        head.append(rest.pop(0))
    parts = [" ".join(_word(t) for t in head)]
    while rest:
        flag = rest.pop(0)
        value = [rest.pop(0)] if rest and not rest[0].startswith("--") else []
        parts.append(" ".join(_word(t) for t in [flag, *value]))
    return " \\\n    ".join(parts)


def shell_group(g: ServerGroup) -> str:
    """A group's commands: its config files, then what each server runs."""
    lines = [_group_line(g)]
    for path, text in g.files.items():
        lines.append(f"mkdir -p {shlex.quote(str(Path(path).parent))} && cat > {shlex.quote(path)} <<'EOF'")
        lines += [text.rstrip("\n"), "EOF"]
    if g.nodes > 1:
        lines.append(f"# on the first node of each server ({g.nodes} nodes; LEADER_ADDRESS: its address):")
        if leader_setup(g):
            lines.append(shlex.join(leader_setup(g)))
    if g.node_commands:
        lines.append(f"# on each node, {len(g.node_commands)} servers side by side, each on its own devices and ports:")
        for c in g.node_commands:
            env = " ".join(f"{name}={shlex.quote(value)}" for name, value in c["env"].items())
            lines.append(f"{env} {_command(c['argv'])} &")
        lines.append("wait")
    else:
        lines.append(_command(g.argv))
    if g.worker_argv:
        others = "the other node" if g.nodes == 2 else f"each of the other {g.nodes - 1} nodes"
        ranks = (
            ""
            if "$(LWS_WORKER_INDEX)" not in g.worker_argv
            else ", NODE_RANK: " + ("1" if g.nodes == 2 else f"1 to {g.nodes - 1}")
        )
        worker = _command(g.worker_argv) if ranks else " ".join(_word(a) for a in g.worker_argv)
        lines += [f"# on {others} (LEADER_ADDRESS: the first node's{ranks}):", worker]
    return "\n".join(lines)


def k8s_group(objects: list[dict]) -> str:
    return "---\n".join(to_yaml(o) for o in objects)


def launch_files(p: LaunchPlan) -> dict[str, str]:
    """One file per server group: NAME.sh (shell) or NAME.yaml (k8s, with the role's Service)."""
    header = "\n".join(_header(p)) + "\n"
    if p.format == "k8s":
        return {f"{g.name}.yaml": header + k8s_group(p.objects[g.name]) for g in p.servers}
    return {f"{g.name}.sh": "#!/bin/sh\n" + header + shell_group(g) + "\n" for g in p.servers}


def launch_text(p: LaunchPlan, wrote: list[Path] | None = None) -> str:
    """What launch prints: the commands or manifests, the files it wrote, or why nothing serves."""
    if p.status == "infeasible":
        return f"{p.model}: infeasible: {p.reason}\nNothing to launch."
    if wrote is not None:
        return "\n".join(f"wrote {path}" for path in wrote)
    header = "\n".join(_header(p))
    if p.format == "k8s":
        return header + "\n" + "---\n".join(k8s_group(p.objects[g.name]) for g in p.servers).rstrip("\n")
    return header + "\n\n" + "\n\n".join(shell_group(g) for g in p.servers)
