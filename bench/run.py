#!/usr/bin/env python3
"""Run dockyard's benchmarks against their peers and write bench/reports/latest.{md,json}.

    python bench/run.py                  # set up peers (tools/setup-peers.sh), run all
    python bench/run.py --no-setup       # peers already set up
    python bench/run.py --only cli_startup --runs 50

Each module in ``bench/benchmarks/`` (not starting with ``_``) defines
``run(ctx) -> list[Result]``; see ``bench/harness.py``. Exit status: 0 when every subject was
measured, 1 when one could not be (the report says which and why), 2 on a harness error.
``--strict`` also exits 1 when a goal is missed. Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import Context, Result, add_ratios, host_facts, write_reports  # noqa: E402

ROOT = BENCH.parent
SETUP = ROOT / "tools" / "setup-peers.sh"


def discover(directory: Path, only: list[str] | None = None) -> dict[str, object]:
    """Benchmark modules by name (file stem), sorted; ``only`` keeps the named ones."""
    found = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        if only and path.stem not in only:
            continue
        spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "run", None)):
            raise SystemExit(f"{path}: a benchmark module must define run(ctx) -> list[Result]")
        found[path.stem] = module
    if only:
        missing = sorted(set(only) - set(found))
        if missing:
            raise SystemExit(f"no benchmark named {', '.join(missing)} in {directory}")
    return found


def setup_peers(script: Path) -> str:
    if not script.exists():
        return f"skipped: {script} not found"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        return f"FAILED ({proc.returncode}): {' / '.join(tail)}"
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "done"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-setup", action="store_true", help="do not run setup-peers.sh")
    ap.add_argument("--setup-script", type=Path, default=SETUP)
    ap.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    ap.add_argument("--runs", type=int, default=20, help="hyperfine runs per command (>= 20 for reports)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--benchmarks-dir", type=Path, default=BENCH / "benchmarks")
    ap.add_argument("--report-dir", type=Path, default=BENCH / "reports")
    ap.add_argument("--root", type=Path, default=ROOT, help="the dockyard checkout (its .venv is measured)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args(argv)

    setup = "skipped (--no-setup)" if args.no_setup else setup_peers(args.setup_script)
    print(f"peers setup: {setup}")
    modules = discover(args.benchmarks_dir, args.only)
    results: list[Result] = []
    failed_modules: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp:
        ctx = Context(root=args.root, runs=args.runs, warmup=args.warmup, work_dir=Path(tmp))
        for name, module in modules.items():
            print(f"== {name}")
            try:
                got = list(module.run(ctx))  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - reported, other benchmarks still run
                traceback.print_exc()
                failed_modules.append(name)
                got = [Result(benchmark=name, name=name, command="", error=f"benchmark failed: {exc!r}")]
            for r in got:
                r.benchmark = r.benchmark or name
            results.extend(got)
    add_ratios(results)
    meta = host_facts() | {"setup": setup, "runs": args.runs, "warmup": args.warmup}
    md, js = write_reports(results, args.report_dir, meta)
    print(md.read_text())
    print(f"wrote {md} and {js}")
    unmeasured = [r for r in results if not r.measured]
    for r in unmeasured:
        print(f"NOT MEASURED: {r.benchmark}/{r.name}: {r.error}", file=sys.stderr)
    if failed_modules:
        return 2
    if unmeasured:
        return 1
    if args.strict and any(g.met is False for r in results for g in r.goals):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
