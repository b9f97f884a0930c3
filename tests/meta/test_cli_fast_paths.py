"""Every command that offers ``dockyard.cli.fast``'s click-free path keeps its side of the
contract: ``dockyard_fast_main(command, args, host)`` defined in the module its ``dockyard.cli``
entry point names, and that module importable without click (else the fast path would cost
what it saves). Each check runs in a fresh interpreter with everything installed."""

from __future__ import annotations

import json
import subprocess
import sys

FIND = """
import importlib, inspect, json
from dockyard.cli.fast import FAST_MAIN
from dockyard.registry import CLI_GROUP, Registry

reg = Registry(environ={})
reg.scan()
found = {}
for rec in reg.find(CLI_GROUP):
    module = rec.target.partition(":")[0].strip()
    fast = vars(importlib.import_module(module)).get(FAST_MAIN)
    if fast is not None:
        found[rec.name] = [module, list(inspect.signature(fast).parameters)]
print(json.dumps(found))
"""

ALONE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in ("click", "http.client", "dockyard.client", "dockyard.registry")
                        if m in sys.modules)))
"""


def test_fast_paths_keep_the_contract() -> None:
    out = subprocess.run([sys.executable, "-c", FIND], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert "run" in found, "dockyard-api-docker's run has a fast path"
    for name, (module, params) in sorted(found.items()):
        assert params == ["command", "args", "host"], f"{module}.dockyard_fast_main({', '.join(params)})"
        alone = subprocess.run([sys.executable, "-c", ALONE, module], capture_output=True, text=True, timeout=60)
        assert alone.returncode == 0, alone.stderr[-2000:]
        assert json.loads(alone.stdout) == [], f"`dockyard {name}`'s module {module} imports {alone.stdout.strip()}"
