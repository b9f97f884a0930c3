"""Fixtures: a throwaway provision driver installed as its own distribution (the service finds
drivers through the registry like any), kernels on private roots, and real daemons for the
integration tests (``machined``)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dockyard.config import Config
from dockyard.kernel import Kernel

FAKE_PROVISION = '''
"""Provision drivers for the machines service's tests. Hosts live in <data_dir>/hosts.json (so a
second kernel on the same roots -- a restarted daemon -- sees them). A host's name decides how
it misbehaves: fail* (create raises), slow* (create never returns), broken* (remove raises),
nostart* (start raises)."""

import asyncio
import json
import uuid

from dockyard.errors import Conflict, NotFound, Unavailable
from dockyard.model import Host
from dockyard.specs import DriverInfo, Provisioner
from dockyard.specs.provision import HostState


def _path(drv):
    return drv.context.data_dir / "hosts.json"


def load(data_dir):
    try:
        return json.loads((data_dir / "hosts.json").read_text())
    except FileNotFoundError:
        return {}


def save(data_dir, hosts):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "hosts.json").write_text(json.dumps(hosts))


def crash(data_dir, name, reason):
    """What a dead engine looks like to the driver."""
    hosts = load(data_dir)
    for rec in hosts.values():
        if rec["name"] == name:
            rec["state"], rec["reason"] = "error", reason
    save(data_dir, hosts)


class Fake(Provisioner):
    info = DriverInfo("fake", "provision", capabilities=frozenset({"tls-rotation"}))

    def _load(self):
        return load(self.context.data_dir)

    def _save(self, hosts):
        save(self.context.data_dir, hosts)

    async def prepare(self, request):
        hosts = self._load()
        if any(r["name"] == request.name for r in hosts.values()):
            raise Conflict(f"a fake host named {request.name} exists")
        host_id = uuid.uuid4().hex
        address = f"192.0.2.{len(hosts) + 2}"
        hosts[host_id] = {"name": request.name, "state": "prepared", "reason": "", "address": address,
                          "flags": [], "env": dict(request.engine_env), "labels": dict(request.labels),
                          "options": dict(request.options), "cert": "", "starts": 0}
        self._save(hosts)
        return Host(id=host_id, name=request.name, driver=self.info.name, addresses=[address],
                    engine_url=f"tcp://{address}:2376", labels=dict(request.labels), extra={"fake": host_id})

    async def create(self, host, tls, engine_flags):
        if host.name.startswith("slow"):
            await asyncio.Event().wait()
        hosts = self._load()
        rec = hosts[host.id]
        rec["flags"], rec["cert"] = list(engine_flags), tls.pem("cert").decode()
        if host.name.startswith("fail"):
            rec["state"] = "half"
            self._save(hosts)
            raise Unavailable("the engine of host " + host.name + " did not come up")
        rec["state"], rec["starts"] = "running", 1
        self._save(hosts)
        host.state = "running"
        return host

    async def start(self, host):
        hosts = self._load()
        if host.id not in hosts:
            raise NotFound(host.name)
        if host.name.startswith("nostart"):
            raise Unavailable("the engine of host " + host.name + " exited with status 1")
        hosts[host.id].update(state="running", reason="", starts=hosts[host.id]["starts"] + 1)
        self._save(hosts)

    async def stop(self, host):
        hosts = self._load()
        if host.id not in hosts:
            raise NotFound(host.name)
        hosts[host.id].update(state="stopped", reason="")
        self._save(hosts)

    async def remove(self, host):
        if host.name.startswith("broken"):
            raise Unavailable("the host " + host.name + " cannot be taken apart")
        hosts = self._load()
        hosts.pop(host.id, None)
        self._save(hosts)

    async def state(self, host):
        rec = self._load().get(host.id)
        if rec is None or rec["state"] == "prepared":
            return HostState("none")
        if rec["state"] == "half":
            return HostState("error", "half made")
        return HostState(rec["state"], rec.get("reason", ""))

    async def engine_url(self, host):
        return host.engine_url

    async def update_tls(self, host, tls):
        hosts = self._load()
        if host.id not in hosts:
            raise NotFound(host.name)
        hosts[host.id]["cert"] = tls.pem("cert").decode()
        self._save(hosts)


class Plain(Fake):
    """The same without the capability to rotate certificates (the spec's default applies)."""

    info = DriverInfo("fake-plain", "provision")
    update_tls = Provisioner.update_tls
'''


@pytest.fixture
def fake_provision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Provision drivers ``fake`` and ``fake-plain``, installed the way pip leaves a
    distribution (``acme-fake-provision``) on a ``sys.path`` entry of this test only; returns
    the driver module."""
    site = tmp_path / "site"
    site.mkdir()
    info = site / "acme_fake_provision-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-fake-provision\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[dockyard.drivers.provision]\nfake = acme_fake_provision:Fake\n"
                                           "fake-plain = acme_fake_provision:Plain\n")
    (site / "acme_fake_provision.py").write_text(textwrap.dedent(FAKE_PROVISION))
    monkeypatch.syspath_prepend(str(site))
    import acme_fake_provision

    yield acme_fake_provision
    sys.modules.pop("acme_fake_provision", None)


@pytest_asyncio.fixture
async def make_kernel(tmp_path: Path, fake_provision: Any, dockyard_owners: Any) -> AsyncIterator[Callable[[], Kernel]]:
    """``make()``: a kernel on this test's roots (the same each call: a daemon started again,
    its drivers finding their records); every one made is stopped at teardown."""
    made: list[Kernel] = []

    def make() -> Kernel:
        cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")})
        kernel = Kernel.build(cfg, autoload=False, environ={})
        dockyard_owners.record(kernel.config.owner, tmp_path)
        made.append(kernel)
        return kernel

    yield make
    for k in made:
        await k.stop()


# ---------------------------------------------------------------------------------- real daemons
def netns_unavailable() -> str | None:
    """Why machines with real engines cannot be made here (a skip reason)."""
    if os.geteuid() != 0:
        return "netns machines need root"
    for module, dist in (("dockyard_engine", "dockyard-engine"), ("dockyard_api_docker", "dockyard-api-docker"),
                         ("dockyard_arch_linux", "dockyard-arch-linux"),
                         ("dockyard_provision_netns", "dockyard-provision-netns")):
        if importlib.util.find_spec(module) is None:
            return f"netns machines need {dist}: pip install {dist}"
    return None


@pytest.fixture(scope="session")
def needs_netns() -> None:
    """Skips (with the reason) where netns machines cannot be made."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def short_roots() -> Iterator[Callable[[], Path]]:
    """Short private directories under /tmp: a netns host's unix sockets live below the
    daemon's exec root, and sun_path holds 108 bytes."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="dym-", dir="/tmp")))
        return made[-1]

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
