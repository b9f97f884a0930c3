"""Heavy libraries stay out of what every daemon and every ``dockyard run`` imports (#21 item 10:
dockyardd's RSS after start and one container ≤ 50 MiB, ``dockyard run`` ≤ 0.5× podman).

A plugin's hook module is imported by every kernel (every feature plugin registers its hooks),
and every driver's class module by a kernel whose configuration sets a key no plugin declares
(it then reads every installed driver's settings) and by ``dockyard plugins list``, so they
must be light: aetcd/grpc, cryptography, rich, yaml... are imported inside the functions and
factories that use them. Each check runs in a fresh interpreter with everything installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: Not imported by a kernel that does not use them (what each costs, measured 2026-12-07).
HEAVY_FOR_THE_DAEMON = {
    "aetcd": "etcd driver without --cluster-store (aetcd+grpc ~30 MiB, 40 ms)",
    "grpc": "etcd driver without --cluster-store",
    "cryptography": "machine certs, provenance keys/policy (~12 MiB)",
    "bcrypt": "provenance keys",
    "packaging": "ssh provisioner's wheelhouse (~5 MiB, 20 ms)",
    "asyncssh": "ssh provisioner (~130 ms)",
    "pyroute2": "bridge and ipam speak rtnetlink themselves; overlay/netns import it when used (~8 MiB, 120 ms)",
    "rich": "CLI output only",
    "yaml": "compose (a client-side CLI group)",
}

#: Not imported by ``dockyard run``: the command needs click and the API client only.
HEAVY_FOR_THE_CLI = {
    *HEAVY_FOR_THE_DAEMON,
    "aiohttp", "pluggy", "importlib.metadata", "stevedore", "asyncio", "sqlite3",
}

DAEMON_IMPORTS = """
import json, sys
from dockyard.config import Config
from dockyard.kernel import Kernel
from dockyard.server import build_app

root = sys.argv[1]
kernel = Kernel.build(Config(values={"data-root": root + "/data", "exec-root": root + "/run"}))
kernel.validate_config()      # core and plugin keys only: no driver class is imported
kernel.provided()             # what plugins offer (dockyard_provides)
build_app(kernel)             # every API route and middleware
started = sorted(sys.modules)
kernel.config_options()       # every installed driver's settings, as a driver's key in daemon.json reads them
print(json.dumps(started))
print(json.dumps(sorted(sys.modules)))
"""

#: Driver modules a daemon that uses none of them (no cluster store, no CNI/overlay network,
#: no provisioned host) must not import at start (#21 item 10: ~1.1 MiB of RSS together).
UNUSED_AT_START = ("dockyard_network_cni.driver", "dockyard_network_overlay.driver",
                   "dockyard_cluster_etcd.driver", "dockyard_provision_qemu.driver",
                   "dockyard_storage_vfs.driver", "dockyard_arch_windows.driver")
#: Plugin modules imported at their first request, not at start (builder ~0.6 MiB, the
#: registry client ~0.6-1.1 MiB).
FIRST_USE_ONLY = ("dockyard_builder.builder", "dockyard_distribution.client", "dockyard_distribution.api")
#: Imported by what needs them, never at start (#21 item 10, 2026-12-07 session 7): the scheduler's
#: filters and constraint parser (a manager's placement; ~0.2 MiB), the SSH installer's wheelhouse
#: (an engine install; importlib.metadata's scan), the CLI's API client package (api-docker's
#: progress bars use its units; ~0.1 MiB).
NOT_AT_START = ("dockyard_cluster_scheduler.filters", "dockyard_cluster_scheduler.expr",
                "dockyard_cluster_scheduler.strategies", "dockyard_provision_ssh.wheelhouse", "dockyard.client")

CLI_IMPORTS = """
import json, sys
import click
from dockyard.cli.root import cli

cli.get_command(click.Context(cli), sys.argv[1])
import dockyard.client, dockyard.client.hijack  # what the command imports when it runs
print(json.dumps(sorted(sys.modules)))
"""


def imported(script: str, *args: str, env: dict[str, str] | None = None) -> set[str]:
    return imported_by_step(script, *args, env=env)[-1]


def imported_by_step(script: str, *args: str, env: dict[str, str] | None = None) -> list[set[str]]:
    """The modules ``script`` printed (a JSON list per line)."""
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return [set(json.loads(line)) for line in out.stdout.strip().splitlines() if line.startswith("[")]


def offenders(modules: set[str], heavy: set[str] | dict[str, str]) -> list[str]:
    return sorted(h for h in heavy if h in modules)


def test_a_kernel_built_as_the_daemon_builds_it_imports_no_heavy_library(tmp_path: Path) -> None:
    started, modules = imported_by_step(DAEMON_IMPORTS, str(tmp_path))[-2:]
    assert "dockyard_network_bridge.driver" in modules  # the drivers' classes were imported
    installed = [m for m in UNUSED_AT_START if m in modules]
    assert installed and not [m for m in installed if m in started], "a driver nobody uses was imported at start"
    assert not [m for m in FIRST_USE_ONLY if m in started], "imported at start, needed only by its routes"
    early = [m for m in NOT_AT_START if m in started]
    assert not early, f"imported at a daemon's start, needed by no start or run: {early}"
    found = offenders(modules, HEAVY_FOR_THE_DAEMON)
    assert not found, ("imported at daemon start; import them inside the function that uses them: "
                       + "; ".join(f"{m} ({HEAVY_FOR_THE_DAEMON[m]})" for m in found))


def test_dockyard_run_imports_only_what_a_run_needs(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    # a first lookup writes the CLI's entry-point cache (a fresh scan imports importlib.metadata)
    imported(CLI_IMPORTS, "run", env=env)
    modules = imported(CLI_IMPORTS, "run", env=env)
    assert "dockyard_api_docker.cli.run" in modules
    found = offenders(modules, HEAVY_FOR_THE_CLI)
    assert not found, f"`dockyard run` imports {', '.join(found)}"
