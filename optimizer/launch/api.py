"""launch(): optimize, then the engine commands and Kubernetes objects of the answer; and
write_files() for `launch --out DIR`."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path

from optimizer.api import Search, optimize
from optimizer.errors import InputError, check_choice
from optimizer.launch import commands, manifests, servers
from optimizer.launch.engines import FORMATS, EngineSpec, check_runs, load_engine, serves
from optimizer.launch.result import LaunchPlan
from optimizer.models import Model, is_builtin_model, load_model
from optimizer.profiles import DEFAULT_PROFILE, Book, Profile
from optimizer.result import OptimizeResult
from optimizer.workload import Workload


@functools.cache
def _hf_repos() -> dict[str, str]:
    """Built-in model name -> the Hugging Face repository models.toml names for it."""
    tables = tomllib.loads(resources.files("optimizer").joinpath("data/models.toml").read_text())["models"]
    return {n: t.get("hf_repo") or next((a for a in t.get("aliases", []) if "/" in a), "") for n, t in tables.items()}


def default_model_id(model: Model | str | Path, mdl: Model) -> str:
    """What the engine loads: a built-in model's Hugging Face repository, or the folder of a
    config.json (which must hold the weights too)."""
    if isinstance(model, Model) or is_builtin_model(str(model)):
        repo = _hf_repos().get(mdl.name, "")
        if not repo:
            raise InputError(f"model {mdl.name!r} names no Hugging Face repository: pass model_id=")
        return repo
    path = Path(model)
    return str((path if path.is_dir() else path.parent).resolve())


def _infeasible_reason(result: OptimizeResult) -> str | None:
    if result.best is None:
        return result.reason or "nothing serves this target"
    d = result.deployment
    if d is not None and not d.decode:
        return d.reason or f"no deployment serves {d.qps:g} queries per second"
    return None


def _notes(
    spec: EngineSpec,
    groups: list[servers.ServerGroup],
    result: OptimizeResult,
    qps: float | None,
    mdl: Model,
    model_id: str,
) -> list[str]:
    notes = []
    for g in groups:
        if g.attention_dp > 1 and spec.parallel.note:
            notes.append(spec.parallel.note)
        if g.dp > 1 and mdl.is_moe:
            layout = "expert-parallel" if g.ep > 1 else "tensor-parallel"
            notes.append(
                f"{g.name} on {g.chip}: {spec.label} runs the {g.dp} replicas of a slice as data-parallel ranks of one "
                f"server, and a mixture-of-experts model's ranks are not independent: their expert layers form one "
                f"{layout} group over all {g.chips} chips and step together, where the plan costs {g.dp} replicas "
                f"of {g.tp} chips each"
            )
        if g.memory_need > spec.memory.high:
            notes.append(
                f"{g.name} on {g.chip}: weights and the KV caches of {g.batch} sequences with a "
                f"{spec.memory.margin:.0%} margin need a memory fraction of {g.memory_need:.2f}, above the "
                f"{spec.memory.high:.2f} servesat gives {spec.label}: the engine may hold fewer sequences than "
                "the plan's batch at the full context"
            )
        if g.model_id != model_id:
            source = spec.checkpoint_sources.get(g.weights, "")
            notes.append(f"{g.weights} weights from the pre-quantized checkpoint {g.model_id}: {source}")
    if result.serving == "disaggregated":
        notes.append(spec.router)
        if qps is None:
            notes.append(
                "without --qps: one decode slice and the prefill servers its replicas need (the ratio rounded up); "
                "--qps sizes the whole deployment for a demand"
            )
    elif result.serving == "decode-only":
        notes.append("a decode-only plan: the servers also prefill prompts, which the plan did not cost")
    return list(dict.fromkeys(notes))


def launch(
    model: Model | str | Path,
    workload: Workload,
    *,
    profile: Profile = DEFAULT_PROFILE,
    search: Search | None = None,
    engine: str = "vllm",
    fmt: str = "shell",
    qps: float | None = None,
    objective: str = "queries-per-dollar",
    time_limit_s: float = 5.0,
    image: str | None = None,
    model_id: str | None = None,
) -> LaunchPlan:
    """Optimize (as optimize() with the same arguments), then the engine commands and
    Kubernetes objects that start the answer's decode replicas and prefill servers.

    search: where to look (None, or no chips named: every chip of the built-in catalog that
    the engine serves);
    engine: vllm, sglang, trtllm or vllm-tpu (its flag table: optimizer/launch/data/ENGINE.toml);
    fmt: shell or k8s (what the command line prints; both are in the result); image: the
    container image (default: the engine's for the chip family); model_id: what the
    engine loads instead of the model's Hugging Face repository.
    Raises InputError when the engine cannot express the plan (a chip family or dtype it
    lacks); an unreachable target is a result with status "infeasible" and no commands.
    """
    search = search if search is not None else Search()
    spec = load_engine(engine)
    if isinstance(profile, Book):  # candidates the engine can run (the calibrated profile names its own)
        profile = replace(profile, engine=spec.name)
    catalog, names, _, _ = search.resolve()
    served = [n for n in names if serves(spec, catalog[n])]
    # without --chip every chip of the engine's families; named chips it does not serve are left
    # out and said (all of them: refused below, with the reason)
    left_out = [n for n in names if n not in served] if search.chips and served else []
    search = replace(search, chips=served or names)
    check_choice("format (--format)", fmt, FORMATS)
    mdl = model if isinstance(model, Model) else load_model(model)
    _refuse_what_the_engine_cannot_run(spec, mdl, search)

    def attempt(where: Search) -> LaunchPlan:
        return _launch(model, mdl, workload, profile, where, spec, fmt, qps, objective, time_limit_s, image, model_id)

    try:
        plan = attempt(search)
    except InputError as refusal:
        if search.max_nodes <= 1 or "--max-nodes 1" not in str(refusal):
            raise
        # the optimum spans nodes in a way the engine cannot start: the best plan within one node
        plan = attempt(replace(search, max_nodes=1))
        if plan.status == "infeasible":
            raise  # nothing within one node serves it either: the refusal says what the engine lacks
        plan.notes.insert(
            0,
            f"the optimum over up to {search.max_nodes} nodes is not one {spec.label} can start ({refusal}); "
            "this is the best plan within one node",
        )
    if left_out:
        families, chips = ", ".join(spec.families), ", ".join(left_out)
        plan.notes.insert(0, f"{spec.label} does not serve {chips} (it runs on {families} chips): left out")
    return plan


def _refuse_what_the_engine_cannot_run(spec: EngineSpec, mdl: Model, search: Search) -> None:
    """InputError with the engine's reason when it runs none of the asked (chip, weights, KV)
    combinations: a search that could only come back empty is a refusal, not an answer."""
    catalog, names, weights, kv = search.resolve()
    refusal: InputError | None = None
    for chip in (catalog[n] for n in names):
        for w in weights or chip.weight_dtypes:
            for k in kv or chip.kv_dtypes:
                try:
                    check_runs(spec, chip, w, k, mdl.name)
                    return
                except InputError as e:
                    refusal = refusal or e
    if refusal is not None:
        raise refusal


def _launch(
    model: Model | str | Path,
    mdl: Model,
    workload: Workload,
    profile: Profile,
    search: Search,
    spec: EngineSpec,
    fmt: str,
    qps: float | None,
    objective: str,
    time_limit_s: float,
    image: str | None,
    model_id: str | None,
) -> LaunchPlan:
    result = optimize(
        mdl, workload, profile=profile, search=search, objective=objective, top=1, qps=qps,
        time_limit_s=time_limit_s, alternatives=False,
    )  # fmt: skip
    plan = LaunchPlan(
        engine=spec.name, engine_version=spec.version, engine_source=f"{spec.url} ({spec.retrieved})",
        model=mdl.name, model_id=None, status=result.status, reason=None, serving=result.serving,
        profile=result.profile, format=fmt, qps=qps, plan=None,
    )  # fmt: skip
    reason = _infeasible_reason(result)
    if reason is not None:
        plan.status, plan.reason = "infeasible", reason
        return plan
    assert result.best is not None
    plan.model_id = model_id or default_model_id(model, mdl)
    catalog = search.resolve()[0]
    target = servers.Target(mdl, plan.model_id, workload, profile, catalog)
    plan.servers = servers.groups(spec, result, target)
    for g in plan.servers:
        commands.build(spec, g, disaggregated=result.serving == "disaggregated")
    images = {g.name: image or spec.images[g.family] for g in plan.servers}
    plan.objects = manifests.by_group(manifests.base_name(mdl.name, spec.name), plan.servers, images)
    plan.plan = servers.plan_summary(result.best, workload.context)
    plan.notes = _notes(spec, plan.servers, result, qps, mdl, plan.model_id)
    plan.uncertainty, plan.assumed = result.uncertainty, result.assumed
    return plan


def write_files(directory: str | Path, files: dict[str, str]) -> list[Path]:
    """Write each file (name -> text) into the directory, made if missing; the paths written."""
    out = Path(directory)
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = out / name
            path.write_text(text)
            written.append(path)
    except OSError as e:
        raise InputError(f"--out {directory}: cannot write ({e.strerror})") from None
    return written
