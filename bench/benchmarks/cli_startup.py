"""CLI start-up: ``dockyard --version`` and ``dockyard --help`` against ``python -c pass`` (the
same interpreter, the floor for any Python CLI) and ``podman --version`` (a peer's CLI).

Goal (issue 3): ``dockyard --version`` ≤ 100 ms wall, i.e. within 5× of ``python -c pass``.
"""

from __future__ import annotations

from harness import Context, Goal, Result, add_ratios, check_command, fill, hyperfine

NAME = "cli_startup"
BUDGET_MS = 100.0
MAX_RATIO = 5.0


def run(ctx: Context) -> list[Result]:
    dockyard = str(ctx.venv_bin / "dockyard")
    subjects = {"dockyard --version": [dockyard, "--version"], "dockyard --help": [dockyard, "--help"]}
    peers = {"python -c pass": [str(ctx.python), "-c", "pass"], "podman --version": ["podman", "--version"]}
    results: list[Result] = []
    runnable: dict[str, list[str]] = {}
    for role, commands in (("subject", subjects), ("peer", peers)):
        for name, argv in commands.items():
            why = check_command(argv)
            if why and name.startswith("dockyard"):
                why += (" (the dockyard CLI is not installed yet: `make install` creates it)"
                        if "does not exist" in why else " (the dockyard CLI is installed but broken)")
            results.append(Result(benchmark=NAME, name=name, command=" ".join(argv), role=role, error=why))
            if not why:
                runnable[name] = argv
            else:
                ctx.log(f"  {name}: NOT MEASURED: {why}")
    if runnable:
        stats = hyperfine(ctx, runnable, NAME)
        for r in results:
            if r.name in stats and "error" in stats[r.name]:
                r.error = stats[r.name]["error"]
            elif r.name in stats:
                fill(r, stats[r.name])
    add_ratios(results)
    version = next(r for r in results if r.name == "dockyard --version")
    floor = "python -c pass"
    version.goals = [
        Goal(f"`dockyard --version` ≤ {BUDGET_MS:.0f} ms",
             None if not version.measured else version.median_ms <= BUDGET_MS,
             "" if not version.measured else f"median {version.median_ms:.1f} ms"),
        Goal(f"`dockyard --version` within {MAX_RATIO:.0f}× of `{floor}`",
             None if floor not in version.ratios else version.ratios[floor] <= MAX_RATIO,
             "" if floor not in version.ratios else f"{version.ratios[floor]:.2f}×"),
    ]
    return results
