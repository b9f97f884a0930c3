"""Wheels of the tree and fresh virtual environments installed from them alone.

The technique lives in ``tools/wheelhouse.py`` (``tools/test_alone.py`` uses it too):

``wheelhouse`` (session): a wheel of every distribution of ``tools/distributions.py`` and of the
``dockyard`` meta-distribution (the root ``pyproject.toml``), each built from a copy of its own
directory, and next to them the third-party wheels they need. Those are repacked from the
main venv's installed files (the versions the rest of the suite tests), so installing needs
no index: ``pip install --no-index`` proves that every dockyard distribution came from our
wheels, and the tests run offline.

:class:`Venv`: ``python -m venv --without-pip`` (no ``--system-site-packages``), filled by the
main venv's pip through ``pip --python`` (a pip per venv would cost a few seconds each), and
its own ``dockyardd`` and ``dockyard`` run with an environment that cannot see the tree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, Owners, wait_for_socket
from tools import wheelhouse as wh
from tools.wheelhouse import ROOT, Wheelhouse, distributions

__all__ = ["ROOT", "Venv", "Wheelhouse", "distributions"]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    return wh.build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


class Venv(wh.Venv):
    """A fresh venv (``tools.wheelhouse.Venv``) that runs its own daemon and CLI."""

    def start_daemon(self, root: Path, owners: Owners, *extra: str) -> Daemon:
        """This venv's ``dockyardd`` on private roots under ``root`` (the SDK's layout: data
        ``root/data``, exec root, socket and pidfile in ``root/run``), answering ``/_ping``."""
        root.mkdir(parents=True, exist_ok=True)
        owners.record_data_root(root / "data", root)
        args = [self.bin("dockyardd"), "--data-root", str(root / "data"), "--exec-root", str(root / "run"),
                "-H", f"unix://{root / 'run' / 'dockyard.sock'}", "--pidfile", str(root / "run" / "dockyardd.pid"),
                *extra]
        log = root / "daemon.log"
        with open(log, "ab") as fh:
            proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=self.env, cwd=root,
                                    start_new_session=True)
        daemon = Daemon(root=root, proc=proc, args=args)
        wait_for_socket(daemon.socket, proc, log)
        return daemon

    def dockyard(self, daemon: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """This venv's own ``dockyard`` CLI against ``daemon``."""
        res = subprocess.run([self.bin("dockyard"), "-H", daemon.host, *args], capture_output=True, text=True,
                             env=self.env, cwd=self.path, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} exited {res.returncode}:\n{res.stderr}\n"
                                 f"daemon log:\n{daemon.log[-3000:]}")
        return res
