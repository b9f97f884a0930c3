"""The swarm's test cluster: a real etcd, three netns hosts joined to it, a manager.

``swarm_cluster`` (module scope, about 5 s to make) is shared by the integration modules:

- etcd (the SDK's ``start_etcd``) listens on the netns bridge's gateway address, which the hosts
  reach and this machine too;
- three netns hosts ``h1``..``h3`` (the SDK's :class:`NetnsHosts`), each engine started with
  ``--cluster-store etcd://GW:PORT/PREFIX --cluster-advertise eth0:2376`` and a short heartbeat
  (0.5 s, TTL 2 s), each with the offline busybox image;
- a manager dockyardd (role ``manager``) on a unix socket and ``tcp://127.0.0.1:PORT`` with
  mutual TLS, its certificate valid for both ends (it serves, and it dials the engines).

Tests use it with the real docker CLI (``cluster.docker(...)``), and may start more managers
(:meth:`SwarmCluster.start_manager`) or kill and restart a host's engine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

HEARTBEAT = 0.5
TTL = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Manager:
    daemon: Any  # dockyard_plugin_sdk.testing.daemon.Daemon
    port: int

    @property
    def socket(self) -> Path:
        return Path(self.daemon.socket)

    @property
    def advertise(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return (self.daemon.root / "daemon.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class SwarmCluster:
    root: Path
    etcd: Any  # EtcdCluster
    url: str
    netns: Any  # NetnsHosts
    hosts: list[Any]
    certs: Path  # the manager's certificate directory (also a DOCKER_CERT_PATH for the docker CLI)
    owners: Any
    store_options: list[str] = field(default_factory=list)  # kv.* KEY=VALUE: TLS to etcd
    managers: list[Manager] = field(default_factory=list)

    @property
    def manager(self) -> Manager:
        return self.managers[0]

    def host(self, name: str) -> Any:
        return next(h for h in self.hosts if h.name == name)

    def start_manager(self, *extra: str, config: dict[str, Any] | None = None) -> Manager:
        from dockyard_plugin_sdk.testing import start_daemon

        port = _free_port()
        settings = {"role": "manager", "cluster-store": self.url, "tlsverify": True,
                    "tlscacert": str(self.certs / "ca.pem"), "tlscert": str(self.certs / "cert.pem"),
                    "tlskey": str(self.certs / "key.pem"), "cluster-opts": list(self.store_options), **(config or {})}
        if settings.get("replication"):
            settings["cluster-advertise"] = f"127.0.0.1:{port}"
        root = self.root / f"m{len(self.managers) + 1}"
        daemon = start_daemon(root, "-H", f"tcp://127.0.0.1:{port}", *extra, config=settings, owners=self.owners)
        manager = Manager(daemon, port)
        self.managers.append(manager)
        return manager

    def docker(self, *args: str, manager: Manager | None = None, check: bool = True,
               timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """The real docker CLI against a manager's unix socket (skips without a docker CLI)."""
        cli = shutil.which("docker")
        if cli is None:
            pytest.skip("the docker CLI is not installed")
        m = manager or self.manager
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.root / "docker-config")
        res = subprocess.run([cli, "-H", f"unix://{m.socket}", *args], capture_output=True, text=True,
                             env=env, timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {res.returncode}:\n{res.stderr}\n"
                                 f"manager log:\n{m.log()[-4000:]}")
        return res

    def stop_manager(self, manager: Manager, sig: int = signal.SIGTERM) -> None:
        proc = manager.daemon.proc
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill_engine(self, host: Any) -> None:
        """SIGKILL a host's dockyardd (its containers keep running under their monitors)."""
        pid = int(host.host.extra.get("pid") or 0)
        assert pid > 0, host.host.extra
        os.kill(pid, signal.SIGKILL)

    async def restart_engine(self, host: Any) -> None:
        await self.netns.driver.start(host.host)
        state = await self.netns.driver.state(host.host)
        assert state.state == "running", state


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def swarm_cluster(tmp_path_factory: pytest.TempPathFactory, dockyard_owners: Any) -> AsyncIterator[SwarmCluster]:
    from dockyard_plugin_sdk.testing import etcd_unavailable, netns_cluster, netns_hosts_unavailable

    reason = netns_hosts_unavailable() or etcd_unavailable()
    if reason:
        pytest.skip(reason)
    base = Path(f"/tmp/dysw{uuid.uuid4().hex[:6]}")  # short: the hosts' unix sockets live below it
    async with netns_cluster(base, 3, owners=dockyard_owners, prefix="swarm", heartbeat=HEARTBEAT, ttl=TTL) as c:
        certs = c.netns.ca.write_manager(base / "manager-certs", ["127.0.0.1", c.gateway])
        cluster = SwarmCluster(root=base, etcd=c.etcd, url=c.url, netns=c.netns, hosts=c.hosts, certs=certs,
                               owners=dockyard_owners, store_options=c.store_options)
        try:
            await asyncio.to_thread(cluster.start_manager)
            yield cluster
        finally:
            for m in cluster.managers:
                cluster.stop_manager(m)
