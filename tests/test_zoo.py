"""servesat zoo: rows equal optimize, resume after a kill, formats, bad input, Ray backend."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from optimizer.zoo import COLUMNS, load_zoo, scenarios
from optimizer.zoo_output import RowWriter
from optimizer.zoo_solve import solve_zoo
from tests.helpers import solve

ROOT = Path(__file__).resolve().parent.parent
SMALL = """
[grid]
slo_ms = [15, 40]
context = [2048, 8192]
ttft_ms = [2000]
chips = [["tpu-v5e", "h100"], "b200"]

[[models]]
name = "llama3-8b"
[[models]]
name = "llama3-70b"
context = [4096]
qps = 5
"""


@pytest.fixture
def small_zoo(tmp_path):
    f = tmp_path / "zoo.toml"
    f.write_text(SMALL)
    return f


def test_grid_expands_with_per_model_overrides(small_zoo):
    """Every model x grid combination, with a model's own keys replacing the grid's."""
    sc = scenarios(load_zoo(small_zoo))
    assert len(sc) == 2 * 2 * 2 + 2 * 1 * 2
    assert {s["context"] for s in sc if s["model"] == "llama3-70b"} == {4096}
    assert all(s["qps"] == 5 for s in sc if s["model"] == "llama3-70b")
    assert len({s["scenario_id"] for s in sc}) == len(sc)


def test_rows_equal_optimize(small_zoo):
    """A sample of rows equals what optimize gives for the same scenario."""
    rows = {r["scenario_id"]: r for r in solve_zoo(small_zoo, workers=2)}
    assert len(rows) == 12
    for sc in random.Random(3).sample(scenarios(load_zoo(small_zoo)), 5):
        r = rows[sc["scenario_id"]]
        res = solve(
            sc["model"],
            sc["slo_ms"],
            chip_names=sc["chip_set"],
            context=sc["context"],
            ttft_ms=sc["ttft_target_ms"],
            qps=sc["qps"],
            top=1,
        )
        assert r["status"] == res.status
        if res.best:
            b = res.best
            assert (r["chip"], r["topology"], r["tp"], r["weights"], r["kv"], r["batch"]) == (
                b.chip,
                b.topology,
                b.tp,
                b.weights,
                b.kv,
                b.batch,
            )
            assert r["queries_per_dollar"] == b.queries_per_dollar and r["prefill_chip"] == b.prefill.chip
        if res.deployment:
            assert r["deployment_cost_per_hour"] == res.deployment.cost_per_hour


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".md"])
def test_each_format_resumes_without_duplicates(small_zoo, tmp_path, suffix):
    """Write part of the zoo, cut the last line short, resume: every scenario exactly once."""
    out = tmp_path / f"rows{suffix}"
    ids = [s["scenario_id"] for s in scenarios(load_zoo(small_zoo))]
    w = RowWriter(out, resume=False)
    for row in list(solve_zoo(small_zoo, workers=1))[:5]:
        w.write(row)
    w.close()
    with open(out, "a") as f:
        f.write("partial-line-without-newline")
    r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(out), "--resume", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "7 scenarios solved, 5 already in" in r.output
    written = _ids(out)
    assert sorted(written) == sorted(ids)


def _ids(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".csv":
        return [row["scenario_id"] for row in csv.DictReader(text.splitlines())]
    if path.suffix == ".jsonl":
        return [json.loads(line)["scenario_id"] for line in text.splitlines()]
    return [line.strip("| ").split(" | ")[0] for line in text.splitlines()[2:]]


def test_killed_run_resumes_to_every_scenario_once(tmp_path):
    """SIGKILL a real run midway; --resume then yields every scenario exactly once."""
    out = tmp_path / "zoo.csv"
    zoo = ROOT / "examples" / "zoo.toml"
    cmd = [sys.executable, "-c", "import cli; cli.main()", "zoo", str(zoo), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 15):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = out.read_text().count("\n") - 1
    assert 0 < before < 120
    r = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == 120


def test_unknown_key_and_bad_values_exit_2(tmp_path):
    """An unknown key in the zoo file names the key; bad values name the value."""
    for text, msg in (
        ('[grid]\nslo_ms = [10]\nlatency = 3\n[[models]]\nname = "llama3-8b"\n', "unknown key 'latency' in [grid]"),
        ('colour = 1\n[grid]\nslo_ms = [10]\n[[models]]\nname = "llama3-8b"\n', "unknown key 'colour'"),
        ('[grid]\nslo_ms = [10]\n[[models]]\nname = "llama3-8b"\nspeed = 1\n', "unknown key 'speed'"),
        ('[grid]\nslo_ms = [-1]\n[[models]]\nname = "llama3-8b"\n', "slo_ms values must be positive"),
        ('[grid]\nslo_ms = [10]\nchips = ["tpu-v9"]\n[[models]]\nname = "llama3-8b"\n', "unknown chip in"),
        ('[grid]\ncontext = [10]\n[[models]]\nname = "llama3-8b"\n', "lacks key 'slo_ms'"),
    ):
        f = tmp_path / "z.toml"
        f.write_text(text)
        r = CliRunner().invoke(main, ["zoo", str(f), "--out", str(tmp_path / "o.csv")])
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_bad_models_and_scenarios_become_error_rows(tmp_path):
    """A model that fails to load gives error rows; the rest of the zoo still runs."""
    f = tmp_path / "z.toml"
    (tmp_path / "broken.json").write_text('{"hidden_size": 1')
    f.write_text(
        '[grid]\nslo_ms = [20]\n[[models]]\nname = "llama3-8b"\n[[models]]\nname = "nonesuch-1b"\n'
        '[[models]]\npath = "broken.json"\n'
    )
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(main, ["zoo", str(f), "--out", str(out), "--workers", "1"])
    assert r.exit_code == 0
    rows = {json.loads(x)["model"]: json.loads(x) for x in out.read_text().splitlines()}
    assert rows["llama3-8b"]["status"] == "optimal"
    assert rows["nonesuch-1b"]["status"] == "error" and "unknown model 'nonesuch-1b'" in rows["nonesuch-1b"]["reason"]
    broken = next(v for k, v in rows.items() if k.endswith("broken.json"))
    assert broken["status"] == "error" and "not valid JSON" in broken["reason"]


def test_unwritable_output_fails_before_solving(small_zoo, tmp_path):
    """--out in a missing directory, or with an unknown suffix: exit 2 at once."""
    r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(tmp_path / "no" / "dir.csv")])
    assert r.exit_code == 2 and "cannot be written" in r.output
    r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(tmp_path / "x.xlsx")])
    assert r.exit_code == 2 and "unknown suffix '.xlsx'" in r.output


def test_columns_hold_inputs_status_and_best(small_zoo, tmp_path):
    """Each row has the scenario's inputs, status, reason and the best fields of optimize --json."""
    row = next(iter(solve_zoo(small_zoo, workers=1)))
    assert list(row) == COLUMNS
    assert {
        "model",
        "slo_ms",
        "context",
        "status",
        "reason",
        "chip",
        "topology",
        "batch",
        "step_ms",
        "queries_per_dollar",
        "binding",
    } <= set(row)


def test_ray_backend_writes_the_same_rows(small_zoo, tmp_path):
    """A local Ray instance runs the same scenarios and writes identical rows (resume included)."""
    ray = pytest.importorskip("ray")
    local = tmp_path / "local.csv"
    remote = tmp_path / "ray.csv"
    CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(local), "--workers", "2"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        w = RowWriter(remote, resume=False)
        for row in list(solve_zoo(small_zoo, backend="ray"))[:4]:
            w.write(row)
        w.close()
        r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(remote), "--backend", "ray", "--resume"])
        assert r.exit_code == 0, r.output
    finally:
        ray.shutdown()
    key = lambda row: row["scenario_id"]  # noqa: E731
    a = sorted(csv.DictReader(local.read_text().splitlines()), key=key)
    b = sorted(csv.DictReader(remote.read_text().splitlines()), key=key)
    assert len(a) == 12 and a == b


def test_readme_zoo_example_parses(tmp_path):
    """The zoo file example of docs/zoo.md is valid (with its config path and chips file made real)."""
    text = (ROOT / "docs" / "zoo.md").read_text()
    block = text.split("The zoo file (TOML)")[1].split("```toml\n")[1].split("```")[0]
    (tmp_path / "configs" / "my-model").mkdir(parents=True)
    (tmp_path / "configs" / "my-model" / "config.json").write_text(
        json.dumps(
            {
                "num_hidden_layers": 2,
                "hidden_size": 256,
                "intermediate_size": 512,
                "num_attention_heads": 4,
                "vocab_size": 1000,
            }
        )
    )
    builtin = (ROOT / "optimizer" / "data" / "chips.toml").read_text()
    h100 = builtin.split("[chips.h100]\n")[1].split("\n\n")[0]  # its figures, without sources
    (tmp_path / "my_chips.toml").write_text(f"[chips.my-gpu]\n{h100}\n")
    (tmp_path / "zoo.toml").write_text(block)
    zoo = load_zoo(tmp_path / "zoo.toml")
    assert len(scenarios(zoo)) == (4 * 3 * 2 * 3 * 2 * 2 + 2 * 3 * 2 * 3 * 2 * 2) * 2  # x 2 profiles


@pytest.mark.parametrize(
    "text,msg",
    [
        ('prices = { h100 = "x" }\n[grid]\nslo_ms = [10]\n[[models]]\nname = "llama3-8b"\n', "price for h100"),
        ('chips_file = 5\n[grid]\nslo_ms = [10]\n[[models]]\nname = "llama3-8b"\n', "chips_file must be a path"),
        ("[grid]\nslo_ms = [10]\n[[models]]\npath = 5\n", "'path' must be a non-empty string"),
        ('[grid]\nslo_ms = [10]\n[[models]]\nname = ""\n', "'name' must be a non-empty string"),
        ('[grid]\nslo_ms = [10]\nchips = [[]]\n[[models]]\nname = "llama3-8b"\n', "each chips value must be"),
    ],
)
def test_wrongly_typed_zoo_values_exit_2_and_keep_the_output(tmp_path, text, msg):
    """Bad types are one-line errors, and an existing --out is left as it was."""
    f = tmp_path / "z.toml"
    f.write_text(text)
    keep = tmp_path / "keep.csv"
    keep.write_text("precious\n")
    r = CliRunner().invoke(main, ["zoo", str(f), "--out", str(keep)])
    assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert keep.read_text() == "precious\n"


def test_option_mistakes_exit_2_before_touching_the_output(small_zoo, tmp_path):
    """--address without Ray, --workers with Ray, --out the zoo file itself: errors, output kept."""
    keep = tmp_path / "keep.csv"
    keep.write_text("precious\n")
    for args in (["--address", "10.0.0.1:6379"], ["--backend", "ray", "--workers", "2"]):
        r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(keep), *args])
        assert r.exit_code == 2, r.output
    r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(small_zoo)])
    assert r.exit_code == 2 and "is an input of this command" in r.output
    assert keep.read_text() == "precious\n"


def test_duplicate_combinations_are_one_scenario(tmp_path):
    """The same model twice and 10 vs 10.0 ms: one scenario each, solved once."""
    f = tmp_path / "z.toml"
    f.write_text('[grid]\nslo_ms = [10, 10.0]\n[[models]]\nname = "llama3-8b"\n[[models]]\nname = "llama3-8b"\n')
    assert len(scenarios(load_zoo(f))) == 1
    assert len(list(solve_zoo(f))) == 1


def test_summary_covers_the_whole_file_after_resume(small_zoo, tmp_path):
    """After --resume the per-model summary counts every row in the file, not just the new ones."""
    out = tmp_path / "o.jsonl"
    w = RowWriter(out, resume=False)
    for row in list(solve_zoo(small_zoo))[:7]:
        w.write(row)
    w.close()
    r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(out), "--resume", "--workers", "1"])
    lines = r.output.splitlines()
    assert lines[0].startswith("5 scenarios solved, 7 already in")
    counts = {line.split()[0]: int(line.split()[1]) for line in lines[2:]}
    assert counts == {"llama3-8b": 8, "llama3-70b": 4}


def test_resume_refuses_a_file_with_other_columns(tmp_path):
    zoo = tmp_path / "z.toml"
    zoo.write_text('[grid]\nslo_ms = [20]\nchips = ["h100"]\n[[models]]\nname = "llama3-8b"\n')
    out = tmp_path / "o.csv"
    out.write_text("scenario_id,model,status\nabc,llama3-8b,optimal\n")  # an older version's columns
    res = CliRunner().invoke(main, ["zoo", str(zoo), "--out", str(out), "--resume"])
    assert res.exit_code == 2 and "written with other columns" in res.output
    assert out.read_text() == "scenario_id,model,status\nabc,llama3-8b,optimal\n"


# ----------------------------------------------------------------------------- robustness (issue 16)

BIG = "[grid]\nslo_ms = [{targets}]\ncontext = [2048, 8192]\n" + "".join(
    f'[[models]]\nname = "{m}"\n' for m in ("llama3-8b", "llama3-70b", "qwen3-32b", "mistral-7b")
)


def big_zoo(tmp_path: Path, targets: int = 40) -> Path:
    f = tmp_path / "big.toml"
    f.write_text(BIG.format(targets=", ".join(str(10 + 2 * k) for k in range(targets))))
    return f


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import cli; cli.main()", *args]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for_rows(out: Path, rows: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") > rows:
            return
        time.sleep(0.02)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_run(tmp_path, sig):
    """Killing only the main process (SIGKILL or SIGTERM) leaves no worker running."""
    out = tmp_path / "o.csv"
    proc = subprocess.Popen(
        _cli("zoo", str(big_zoo(tmp_path)), "--out", str(out), "--workers", "2"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_rows(out, 3, proc)
    workers = _children(proc.pid)
    assert workers, "the run finished before it could be killed"
    proc.send_signal(sig)
    proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(_running(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if _running(w)]


@pytest.mark.parametrize("suffix,after_rows", [(".csv", 1), (".csv", 60), (".jsonl", 200), (".md", 30)])
def test_killed_at_any_moment_and_resumed_every_scenario_once(tmp_path, suffix, after_rows):
    zoo = big_zoo(tmp_path)
    total = len(scenarios(load_zoo(zoo)))
    out = tmp_path / f"o{suffix}"
    cmd = _cli("zoo", str(zoo), "--out", str(out), "--workers", "2")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for_rows(out, after_rows, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == total


def test_a_second_run_on_the_same_output_is_refused(small_zoo, tmp_path):
    """The output file is locked: another run (with or without --resume) exits 2 and writes nothing."""
    out = tmp_path / "o.csv"
    w = RowWriter(out, resume=False)
    try:
        for resume in ([], ["--resume"]):
            r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(out), *resume])
            assert r.exit_code == 2 and "is being written by another servesat zoo run" in r.output, r.output
        assert out.read_text().splitlines() == [",".join(COLUMNS)]
    finally:
        w.close()


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("cut.csv", "scenario_id,model,sta", "has no complete header"),
        ("cut.md", "| scenario_id | model |\n|---", "has no complete header"),
        ("other.jsonl", '{"scenario_id": "a", "model": "x"}\n', "written with other columns"),
        ("other.md", "| scenario_id | model |\n|---|---|\n| a | x |\n", "written with other columns"),
    ],
)
def test_resume_refuses_before_changing_anything(small_zoo, tmp_path, name, text, message):
    out = tmp_path / name
    out.write_text(text)
    r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(out), "--resume"])
    assert r.exit_code == 2 and message in r.output, r.output
    assert out.read_text() == text


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".md"])
@pytest.mark.parametrize("damage", ["garbled", "duplicate"])
def test_a_corrupt_line_is_named_and_nothing_changes(small_zoo, tmp_path, suffix, damage):
    out = tmp_path / f"o{suffix}"
    w = RowWriter(out, resume=False)
    for row in list(solve_zoo(small_zoo, workers=1))[:4]:
        w.write(row)
    w.close()
    lines = out.read_text().splitlines(keepends=True)
    body = 0 if suffix == ".jsonl" else 1 if suffix == ".csv" else 2  # first row's index
    bad = body + 2
    lines[bad] = lines[body] if damage == "duplicate" else lines[bad][: len(lines[bad]) // 2] + "\n"
    out.write_text("".join(lines))
    before = out.read_text()
    r = CliRunner().invoke(main, ["zoo", str(small_zoo), "--out", str(out), "--resume"])
    assert r.exit_code == 2 and f"line {bad + 1} is not a servesat zoo row" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert out.read_text() == before


def test_workers_are_capped_by_chunks_and_cores(small_zoo, monkeypatch):
    """--workers 100000 starts no more processes than there are chunks of work and cores."""
    import optimizer.zoo_solve as zs

    seen = []
    real = zs.ProcessPoolExecutor

    def recording(*args, **kwargs):
        seen.append(kwargs["max_workers"])
        return real(*args, **kwargs)

    monkeypatch.setattr(zs, "ProcessPoolExecutor", recording)
    rows = list(solve_zoo(small_zoo, workers=100_000))
    assert len(rows) == len(scenarios(load_zoo(small_zoo)))
    assert all(n <= min(os.cpu_count() or 1, len(rows)) for n in seen)


def test_calibrated_rows_carry_the_band_and_the_priors(tmp_path):
    """Under the calibrated profile a row says what its numbers rest on, as optimize does: the
    band of the step and the TTFT, and the priors behind the winner's chip; book rows neither."""
    from optimizer.profiles import Calibrated

    f = tmp_path / "zoo.toml"
    f.write_text('[grid]\nslo_ms = [40]\ncontext = [8192]\nchips = [["tpu-v6e"]]\nprofile = ["book", "calibrated"]\n')
    f.write_text(f.read_text() + '[[models]]\nname = "llama3-8b"\n')
    rows = {r["profile"]: r for r in solve_zoo(load_zoo(f), workers=1)}
    band = Calibrated().uncertainty()
    calibrated, book = rows["calibrated"], rows["book"]
    assert calibrated["status"] == "optimal" and calibrated["chip"] == "tpu-v6e"
    assert (calibrated["step_band_pct"], calibrated["ttft_band_pct"]) == (band["step_pct"], band["ttft_pct"])
    assert calibrated["assumed"].startswith("tpu-v6e:")
    assert (book["step_band_pct"], book["ttft_band_pct"], book["assumed"]) == (None, None, None)
