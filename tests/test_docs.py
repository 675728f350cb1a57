"""The documentation: README.md stays a front page, its links and the docs/ pages' links resolve,
and nothing tracked points outside the repository at the team's design notes."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
#: Strings no tracked file may contain (besides this test, which names them).
OUTSIDE = ("DESIGN.md", "../shared")


def _relative_links(page: Path) -> list[str]:
    """Link targets of a Markdown page outside code blocks, without web links or bare anchors."""
    text = FENCE.sub("", page.read_text())
    targets = [t.split("#", 1)[0] for t in LINK.findall(text)]
    return [t for t in targets if t and not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_readme_is_a_front_page():
    """README.md is at most 250 lines; the reference lives in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference material into docs/"


def test_docs_pages_exist():
    """The docs/ pages the README and the code point to are there."""
    names = {p.name for p in PAGES}
    for name in (
        "cost-model.md",
        "calibrated-profile.md",
        "serving.md",
        "json.md",
        "chips.md",
        "zoo.md",
        "plan.md",
        "frontier.md",
        "optimizer.md",
    ):
        assert name in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    """Every relative link (and image) in README.md and docs/*.md names a file in the repository."""
    for target in _relative_links(page):
        path = (page.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{page.name}: {target} points outside the repository"
        assert path.exists(), f"{page.name}: {target} does not exist"


def test_no_tracked_file_mentions_the_design_notes():
    """The repository stands alone: no tracked file cites DESIGN.md or ../shared."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    offenders = []
    for name in listed.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or name == "tests/test_docs.py" or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        offenders += [f"{name}: {s}" for s in OUTSIDE if s in text]
    assert not offenders, "tracked files mention the design notes:\n" + "\n".join(offenders)


def test_readme_python_example_runs_and_matches_the_cli():
    """The README's Python API example runs as printed, and its optimum is the one the CLI
    prints for the same flags."""
    import json

    from click.testing import CliRunner

    from cli import main

    text = (ROOT / "README.md").read_text()
    block = text.split("## Python API")[1].split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(block, "README Python API example", "exec"), namespace)
    result, e = namespace["result"], namespace["e"]
    assert result.status == "optimal" and result.deployment is not None and e.fits
    args = ["optimize", "--model", "llama3-70b", "--slo-ms", "20", "--price", "h100=3.99", "--chip", "tpu-v5e"]
    args += ["--chip", "h100", "--weights", "int8", "--kv", "int8", "--prompt-len", "4096", "--ttft-ms", "800"]
    args += ["--qps", "50", "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    cli_best = json.loads(r.output)["best"]
    assert cli_best == result.to_dict()["best"]


def test_every_package_is_installed():
    """pyproject.toml lists every package of the source tree: a non-editable install (the
    Quickstart's) otherwise lacks the subpackages the tests import from the checkout."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("optimizer", "constraints")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed
