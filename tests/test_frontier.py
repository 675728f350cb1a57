"""servesat frontier: the exact Pareto frontier against brute force, the chapter's by-batch
numbers, plots, and bad input."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main, optimize_cmd
from optimizer import load_chips, load_model
from optimizer.frontier import by_batch, frontier
from optimizer.profiles import Calibrated
from optimizer.workload import Workload
from tests.bruteforce import MAX_NODES, _comms_ok, _dtypes, _node_layouts, _node_splits, _replica, _step, engine_runs

ROOT = Path(__file__).resolve().parent.parent


def sig(x):
    return float(f"{x:.12g}")


def brute_frontier(model, chips, names, context, decode_len=512, cal=None):
    """Every axis subset (and replica over several GPU nodes), every batch up to what fits, not
    comms-bound; Pareto-minimal points."""
    pts = []
    for name in names:
        chip = chips[name]
        for _shape, n_chips, y, n, pp, nodes in _node_layouts(chip, MAX_NODES):
            for w in _dtypes(chip, None, chip.weight_dtypes):
                for k, (d, e) in itertools.product(
                    _dtypes(chip, None, chip.kv_dtypes), _node_splits(model, y, pp, nodes)
                ):
                    if cal and not engine_runs(cal["engine"], model.name, chip, w, k):
                        continue  # the engine cannot run it: not a candidate
                    t = _replica(model, chip, y, n, pp, nodes, w, k, context, 1, 0.4, False, 1, cal, d, e)
                    most = math.floor((y * t["M"] - t["P"] * t["bw"]) / t["kv_seq"])
                    if most < 1:
                        continue
                    b = np.arange(1, most + 1)
                    ok = _comms_ok(t, b)
                    b = b[ok]
                    step = _step(t, b)
                    usd = y * chip.usd_per_chip_hour * step / (3600 * b)
                    pts += [(sig(s), sig(u), n_chips) for s, u in zip(step.tolist(), usd.tolist())]
    pts.sort()
    front, best = [], math.inf
    for s, u, n_chips in pts:
        if u < best:
            best = u
            front.append((s, u, n_chips))
    return front


@pytest.mark.parametrize(
    "model,names,context",
    [
        ("llama3-70b", ["tpu-v5e", "h100"], 8192),
        ("llama3-70b", ["tpu-v5e"], 2048),
        ("llama2-13b", ["a100", "tpu-v6e"], 4096),
        ("llama3-405b", ["tpu-v5p", "b200"], 32768),
    ],
)
def test_frontier_equals_brute_force_point_for_point(model, names, context):
    """Same points, same order: (step, $/token) of every frontier point, fastest first."""
    chips = load_chips()
    m = load_model(model)
    ours = [
        (sig(p.step_ms / 1e3), sig(p.usd_per_million_tokens / 1e6), p.chips)
        for p in frontier(m, Workload(context=context), chips={n: chips[n] for n in names})
    ]
    assert ours == brute_frontier(m, chips, names, context)
    assert len(ours) > 10


@pytest.mark.parametrize(
    "model,names,engine", [("llama3-8b", ["h100", "tpu-v5e"], "vllm"), ("qwen3-32b", ["h200"], "sglang")]
)
def test_calibrated_frontier_equals_brute_force(model, names, engine):
    """Under the calibrated profile (every batch enumerated) the frontier is the brute-force one."""
    from optimizer.measurements import bundled_data
    from tests.bruteforce import calibrated_params

    chips = load_chips()
    m = load_model(model)
    ours = [
        (sig(p.step_ms / 1e3), sig(p.usd_per_million_tokens / 1e6), p.chips)
        for p in frontier(
            m, Workload(context=4096), profile=Calibrated(engine=engine), chips={n: chips[n] for n in names}
        )
    ]
    cal = calibrated_params(bundled_data().with_name("calibrated.toml"), engine)
    assert ours == brute_frontier(m, chips, names, 4096, cal=cal)
    assert len(ours) > 10


def test_frontier_is_monotone_and_labelled():
    """Faster points cost more; every point carries its configuration and batch."""
    pts = frontier(load_model("llama3-70b"), Workload(context=8192), chips=load_chips())
    assert all(
        a.step_ms < b.step_ms and a.usd_per_million_tokens > b.usd_per_million_tokens
        for a, b in itertools.pairwise(pts)
    )
    assert all(p.chip and p.topology and p.batch >= 1 for p in pts)


def test_by_batch_matches_the_chapter():
    """70B int8 on a v5e 4x4 at 2k: 5.4 ms weight-load floor; ~0.89 tokens/ms/chip from batch ~120."""
    rows = by_batch(
        load_model("llama3-70b"),
        Workload(context=2048),
        chip=load_chips()["tpu-v5e"],
        topology="4x4",
        tp=None,
        weights="int8",
        kv="int8",
    )
    assert rows[0].step_ms == pytest.approx(5.403043590243903, rel=1e-9)
    assert rows[0].params_ms == pytest.approx(5.3775, rel=1e-4)
    at120 = rows[119]
    assert at120.tokens_per_ms_per_chip == pytest.approx(0.88794474787456, rel=1e-9)
    turn = next(r.batch for r in rows if r.compute_bound)
    assert turn == 121
    assert rows[-1].tokens_per_ms_per_chip == pytest.approx(rows[turn - 1].tokens_per_ms_per_chip, rel=1e-2)


def test_cli_frontier_json_and_csv(tmp_path):
    """--json lists points with optimize's best keys; --out .csv writes them."""
    r = CliRunner().invoke(main, ["frontier", "--model", "llama3-8b", "--chip", "h100", "--json"])
    d = json.loads(r.output)
    assert {"chip", "topology", "tp", "weights", "kv", "batch", "step_ms", "usd_per_million_tokens"} <= set(
        d["points"][0]
    )
    out = tmp_path / "f.csv"
    r = CliRunner().invoke(main, ["frontier", "--model", "llama3-8b", "--chip", "h100", "--out", str(out)])
    assert r.exit_code == 0 and out.read_text().count("\n") == len(d["points"]) + 1


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plots_are_written(tmp_path, suffix):
    """Frontier, by-batch and optimize --plot images are written."""
    pytest.importorskip("matplotlib")
    f = tmp_path / f"f{suffix}"
    r = CliRunner().invoke(main, ["frontier", "--model", "llama3-8b", "--slo-ms", "10", "--out", str(f)])
    assert r.exit_code == 0
    b = tmp_path / f"b{suffix}"
    r = CliRunner().invoke(
        main,
        [
            "frontier",
            "--model",
            "llama3-70b",
            "--chip",
            "tpu-v5e",
            "--topology",
            "4x4",
            "--weights",
            "int8",
            "--kv",
            "int8",
            "--context",
            "2048",
            "--by-batch",
            "--out",
            str(b),
        ],
    )
    assert r.exit_code == 0, r.output
    o = tmp_path / f"o{suffix}"
    r = CliRunner().invoke(optimize_cmd, ["--model", "llama3-8b", "--slo-ms", "10", "--plot", str(o)])
    assert r.exit_code == 0
    for path in (f, b, o):
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if suffix == ".png" else b"<?xml" in head or b"<svg" in head


def _png_size(path):
    head = Path(path).read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_readme_plots_come_from_the_documented_commands(tmp_path):
    """docs/frontier.md embeds both images, and its documented commands redraw them (same size)."""
    pytest.importorskip("matplotlib")
    text = (ROOT / "docs" / "frontier.md").read_text()
    for name in ("docs/frontier.png", "docs/by_batch.png"):
        assert f"]({Path(name).name})" in text
        line = next(x for x in text.splitlines() if x.startswith(".venv/bin/servesat frontier") and name in x)
        args = line.split()[1:]
        args[args.index(name)] = str(tmp_path / "out.png")
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        assert _png_size(tmp_path / "out.png") == _png_size(ROOT / name)


def test_empty_results_are_answers_not_crashes():
    """A configuration that does not fit, or no chip that fits: a sentence, exit 0."""
    r = CliRunner().invoke(
        main,
        [
            "frontier",
            "--model",
            "llama3-405b",
            "--chip",
            "tpu-v5e",
            "--topology",
            "1x1",
            "--weights",
            "bf16",
            "--kv",
            "bf16",
            "--by-batch",
        ],
    )
    assert r.exit_code == 0 and "does not fit on tpu-v5e 1x1" in r.output
    r = CliRunner().invoke(main, ["frontier", "--model", "llama3-405b", "--chip", "tpu-v5e", "--context", "100000000"])
    assert r.exit_code == 0 and "fits on none of the chips" in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--context", "0"], "'--context': 0 is not in the range"),
        (["--chip", "tpu-v9"], "unknown chip 'tpu-v9'"),
        (["--out", "/no/such/dir/f.csv"], "cannot be written"),
        (["--out", "/tmp/f.xlsx"], "unknown suffix '.xlsx'"),
        (["--by-batch"], "--by-batch needs one --chip"),
        (["--chip", "tpu-v5e", "--weights", "fp8"], "no chip asked supports the weights dtypes fp8"),
        (["--topology", "4x4"], "they go with --by-batch"),
        (["--json", "--out", "/tmp/x.csv"], "with --out the file's suffix chooses"),
        (
            [
                "--chip",
                "tpu-v5e",
                "--topology",
                "4x4",
                "--weights",
                "int8",
                "--kv",
                "int8",
                "--by-batch",
                "--slo-ms",
                "5",
            ],
            "--by-batch has no optimum",
        ),
    ],
)
def test_frontier_bad_input(args, message):
    """Each bad frontier input: exit 2, one line."""
    r = CliRunner().invoke(main, ["frontier", "--model", "llama3-8b", *args])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_missing_matplotlib_says_how_to_install(tmp_path):
    """Without matplotlib a PNG path gives one line naming the extra (CSV still works)."""
    code = (
        "import sys; sys.modules['matplotlib'] = None; import cli; "
        f"cli.main(['frontier', '--model', 'llama3-8b', '--chip', 'h100', '--out', r'{tmp_path / 'f.png'}'])"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'servesat[plot]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_library_frontier_validates_dtypes():
    """frontier() itself refuses unknown dtypes and dtypes no chip asked supports."""
    from optimizer import InputError

    chips = load_chips()
    with pytest.raises(InputError, match="unknown weights dtype 'bogus'"):
        frontier(load_model("llama3-8b"), Workload(), chips=chips, weights=("bogus",))
    with pytest.raises(InputError, match="no chip asked supports the weights dtypes fp8"):
        frontier(load_model("llama3-8b"), Workload(), chips={"tpu-v5e": chips["tpu-v5e"]}, weights=("fp8",))


def test_caveats_name_only_the_points_chips(tmp_path):
    """frontier --json's priors and notes are about the chips its points are on, not every chip
    searched: under TensorRT-LLM (NVIDIA only) no TPU or AMD chip is named; --out keeps them."""
    args = ["frontier", "--model", "llama3-70b", "--profile", "calibrated", "--engine", "trtllm"]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    chips = {p["chip"] for p in d["points"]}
    assert all(a.split(":")[0] in chips or a.startswith("engine ") for a in d["assumed"])
    assert not any(name in text for text in d["notes"] + d["assumed"] for name in ("tpu", "mi300x", "a100"))
    out = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "f.csv")]).output
    assert out.splitlines()[0].startswith("wrote ") and "Band: every step ±" in out
