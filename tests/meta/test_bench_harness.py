"""The bench harness's plumbing and report format, with fake benchmarks (no timed assertions)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = load(ROOT / "bench" / "run.py", "_bench_run")
harness = sys.modules["harness"]

FAKE = '''
from harness import Goal, Result, add_ratios

def run(ctx):
    rs = [Result(benchmark="fake", name="subj", command="subj --x", median_ms=50.0, mean_ms=51.0,
                 stddev_ms=2.0, min_ms=45.0, max_ms=60.0, runs=20),
          Result(benchmark="fake", name="floor", command="floor", role="peer", median_ms=10.0, mean_ms=10.0,
                 stddev_ms=1.0, min_ms=9.0, max_ms=12.0, runs=20),
          Result(benchmark="fake", name="peer2", command="peer2", role="peer", median_ms=100.0, mean_ms=100.0,
                 stddev_ms=1.0, min_ms=90.0, max_ms=120.0, runs=20)]
    MISSING
    add_ratios(rs)
    rs[0].goals = [Goal("subj within 4x of floor", rs[0].ratios["floor"] <= 4, f"{rs[0].ratios['floor']:.2f}x")]
    return rs
'''


def bench_dir(tmp_path: Path, missing: bool = False, broken: bool = False) -> Path:
    d = tmp_path / "benchmarks"
    d.mkdir()
    line = ('rs.append(Result(benchmark="fake", name="ghost", command="ghost", error="ghost is not installed"))'
            if missing else "")
    (d / "fake.py").write_text(textwrap.dedent(FAKE).replace("MISSING", line))
    (d / "_helper.py").write_text("raise RuntimeError('underscore modules are not benchmarks')\n")
    if broken:
        (d / "zbroken.py").write_text("def run(ctx):\n    raise ValueError('kaput')\n")
    return d


def test_report_has_medians_ratios_and_goals(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    rc = run.main(["--no-setup", "--benchmarks-dir", str(bench_dir(tmp_path)), "--report-dir", str(reports)])
    assert rc == 0
    data = json.loads((reports / "latest.json").read_text())
    assert {"date", "commit", "cpus", "python", "hyperfine", "setup", "runs"} <= set(data["meta"])
    rows = {r["name"]: r for r in data["results"]}
    assert rows["subj"]["ratios"] == {"floor": 5.0, "peer2": 0.5}
    assert rows["floor"]["ratios"] == {} and rows["floor"]["role"] == "peer"
    assert rows["subj"]["goals"] == [{"text": "subj within 4x of floor", "met": False, "detail": "5.00x"}]
    md = (reports / "latest.md").read_text()
    assert "## fake" in md
    assert "| command | role | median ms | mean ± sd ms | min ms | max ms | runs | × floor | × peer2 |" in md
    assert "| `subj` | subject | 50.0 | 51.0 ± 2.0 | 45.0 | 60.0 | 20 | 5.00 | 0.50 |" in md
    assert "- subj within 4x of floor: **MISSED** (5.00x)" in md
    assert run.main(["--no-setup", "--strict", "--benchmarks-dir", str(tmp_path / "benchmarks"),
                     "--report-dir", str(reports)]) == 1


def test_an_unmeasured_subject_is_said_clearly(tmp_path: Path, capsys) -> None:
    reports = tmp_path / "reports"
    rc = run.main(["--no-setup", "--benchmarks-dir", str(bench_dir(tmp_path, missing=True)),
                   "--report-dir", str(reports)])
    assert rc == 1
    md = (reports / "latest.md").read_text()
    assert "| `ghost` | subject | NOT MEASURED |" in md
    assert "- **`ghost` not measured:** ghost is not installed" in md
    assert "NOT MEASURED: fake/ghost: ghost is not installed" in capsys.readouterr().err


def test_a_failing_benchmark_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    rc = run.main(["--no-setup", "--benchmarks-dir", str(bench_dir(tmp_path, broken=True)),
                   "--report-dir", str(reports)])
    assert rc == 2
    rows = {r["name"]: r for r in json.loads((reports / "latest.json").read_text())["results"]}
    assert "subj" in rows and "kaput" in rows["zbroken"]["error"]


def test_setup_script_runs_unless_no_setup(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "setup-peers.sh"
    script.write_text(f"touch {marker}\necho 'peers ready: fake'\n")
    reports = tmp_path / "reports"
    args = ["--benchmarks-dir", str(bench_dir(tmp_path)), "--report-dir", str(reports), "--setup-script", str(script)]
    assert run.main(["--no-setup", *args]) == 0 and not marker.exists()
    assert run.main(args) == 0 and marker.exists()
    assert json.loads((reports / "latest.json").read_text())["meta"]["setup"] == "peers ready: fake"
    assert "Peers setup: peers ready: fake" in (reports / "latest.md").read_text()
    script.write_text("echo broken >&2; exit 3\n")
    run.main(args)
    assert json.loads((reports / "latest.json").read_text())["meta"]["setup"].startswith("FAILED (3)")


def test_unknown_benchmark_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no benchmark named nope"):
        run.main(["--no-setup", "--only", "nope", "--benchmarks-dir", str(bench_dir(tmp_path)),
                  "--report-dir", str(tmp_path / "r")])


def test_the_cli_startup_benchmark_is_registered() -> None:
    mods = run.discover(ROOT / "bench" / "benchmarks")
    assert "cli_startup" in mods


@pytest.mark.skipif(shutil.which("hyperfine") is None, reason="hyperfine is not installed")
def test_hyperfine_results_are_parsed(tmp_path: Path) -> None:
    ctx = harness.Context(runs=2, warmup=0, work_dir=tmp_path)
    stats = harness.hyperfine(ctx, {"true": ["true"], "echo": ["echo", "x"]}, "t")
    assert list(stats) == ["true", "echo"]
    r = harness.fill(harness.Result(benchmark="t", name="true", command="true"), stats["true"])
    assert r.measured and r.runs == 2 and r.min_ms <= r.median_ms <= r.max_ms


def test_check_command_says_why() -> None:
    assert harness.check_command(["true"]) == ""
    assert "does not exist" in harness.check_command(["/nonexistent/dockyard", "--version"])
    assert "is not installed" in harness.check_command(["no-such-tool-dy", "--version"])
    assert "exits 3" in harness.check_command(["sh", "-c", "echo oops >&2; exit 3"])


@pytest.mark.skipif(shutil.which("hyperfine") is None, reason="hyperfine is not installed")
def test_a_failing_command_does_not_cost_the_others_their_figures(tmp_path: Path) -> None:
    ctx = harness.Context(runs=2, warmup=0, work_dir=tmp_path, log=lambda *_: None)
    stats = harness.hyperfine(ctx, {"true": ["true"], "false": ["false"]}, "t")
    assert "error" in stats["false"] and "exits 1" in stats["false"]["error"]
    assert "median" in stats["true"]


def test_the_default_set_is_read_from_the_meta_distribution() -> None:
    """run_rm's default-set daemon disables exactly what ``pip install dockyard`` would not install."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    with pytest.raises(RuntimeError, match="not installed"):
        harness.default_set_deny("dockyard-no-such-meta")
    deny = harness.default_set_deny()
    required = {Requirement(r).name for r in md.requires("dockyard") or [] if "extra" not in r}
    assert "dockyard-engine" in required and "dockyard-engine" not in deny
    assert not required & set(deny)
    for name in deny:
        assert any(ep.group.startswith("dockyard.") for ep in md.distribution(name).entry_points)
    try:
        md.distribution("dockyard-provenance")
    except md.PackageNotFoundError:
        return
    assert "dockyard-provenance" in deny  # an extra (`dockyard[provenance]`), not the default set


def test_editable_sources_are_the_trees_src_directories() -> None:
    ctx = harness.Context(root=ROOT)
    sources = harness.editable_sources(ctx)
    assert ROOT / "core" / "src" in sources
    assert all(p.is_relative_to(ROOT) and p.name == "src" for p in sources)
