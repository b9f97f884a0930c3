"""Test hosts for multi-host tests: netns hosts, each running its own engine with mutual TLS.

:class:`NetnsHosts` creates hosts through the ``netns`` provision driver, which a kernel loads
from the registry like any driver (this module never imports it): install
``dockyard-provision-netns``. Each host is a network namespace with its own dockyardd,
listening on ``tcp://ADDR:2376`` with mutual TLS; the hosts share a private bridge, so they
reach each other's addresses, and this machine reaches all of them. A throwaway
:class:`~dockyard_plugin_sdk.testing.tls.TestCA` makes every certificate. The SDK's pytest
plugin wraps it in the ``netns_hosts`` fixture::

    async def test_two_engines_see_each_other(netns_hosts):
        a, b = await netns_hosts.create(2)          # in parallel
        a.bootstrap("busybox")                      # a fresh engine has no images
        out = a.docker("run", "--rm", "busybox", "wget", "-qO-", f"http://{b.address}:2376/_ping")
        ...

This is the harness a third-party cluster or network driver tests multi-host behaviour with,
the way dockyard's own do. What is needed (root, the driver, an engine with an API front,
``cryptography`` and ``pyroute2``) is checked by :func:`netns_hosts_unavailable`: the fixture
skips with that reason instead of failing.

:func:`netns_cluster` makes hosts whose engines joined one etcd (``--cluster-store``, mutual
TLS, on the hosts' bridge gateway), the base of the cluster tests (overlay, swarm, migrate).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .leaks import Owners

if TYPE_CHECKING:
    from dockyard.client import Client
    from dockyard.kernel import Kernel
    from dockyard.model import Host
    from dockyard.specs.provision import EngineTLS, Provisioner

    from .tls import TestCA

__all__ = ["NETNS_SUBNET_BASE", "NetnsCluster", "NetnsHost", "NetnsHosts", "netns_cluster", "netns_hosts_unavailable"]

#: The test hosts' ranges are random free /24s of this (the driver's default is 10.247.0.0/24).
NETNS_SUBNET_BASE = "10.247.0.0/16"
DISTRIBUTION = "dockyard-provision-netns"


def netns_hosts_unavailable() -> str | None:
    """Why netns hosts cannot be made here (a skip reason), or None when they can."""
    if os.geteuid() != 0:
        return "netns hosts need root (network namespaces, links, cgroups)"
    for module, dist in (("cryptography", "cryptography"), ("pyroute2", "pyroute2"),
                         ("dockyard_engine", "dockyard-engine"), ("dockyard_api_docker", "dockyard-api-docker")):
        if importlib.util.find_spec(module) is None:
            return f"netns hosts need {dist}: pip install {dist}"
    from dockyard.registry import Registry

    registry = Registry(environ={})
    registry.scan()
    if "netns" not in registry.driver_names("provision"):
        return f"the netns provision driver is not installed: pip install {DISTRIBUTION}"
    return None


@dataclass
class NetnsHost:
    """One test host: the :class:`~dockyard.model.Host` the driver made, and a client
    certificate (``cert_path``: ``ca.pem``, ``cert.pem``, ``key.pem``) its engine accepts."""

    host: Host
    cert_path: Path
    scratch: Path  # the docker CLI's config directory and other client files

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def address(self) -> str:
        """The host's IP address (its engine listens on port 2376 there)."""
        return self.host.addresses[0]

    @property
    def url(self) -> str:
        """``tcp://ADDR:2376``."""
        return self.host.engine_url

    def tls_flags(self) -> list[str]:
        """The docker CLI's flags for this host: ``-H URL --tlsverify --tlscacert ...``."""
        return ["-H", self.url, "--tlsverify", "--tlscacert", str(self.cert_path / "ca.pem"),
                "--tlscert", str(self.cert_path / "cert.pem"), "--tlskey", str(self.cert_path / "key.pem")]

    def docker_env(self) -> dict[str, str]:
        """What ``docker-machine env`` prints for this host (plus a private ``DOCKER_CONFIG``)."""
        return {"DOCKER_HOST": self.url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(self.cert_path),
                "DOCKER_CONFIG": str(self.scratch / "docker-config")}

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real docker CLI against this host over mutual TLS (skips without one)."""
        cli = shutil.which("docker")
        if cli is None:
            import pytest

            pytest.skip("the docker CLI is not installed")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.scratch / "docker-config")
        res = subprocess.run([cli, *self.tls_flags(), *args], input=input, capture_output=True,
                             env=env, timeout=timeout)
        out = subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(errors="replace"),
                                          res.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on host {self.name} exited {out.returncode}:\n"
                                 f"{out.stderr}\nengine log:\n{self.log[-3000:]}")
        return out

    def client(self, timeout: float | None = 60.0) -> Client:
        """Our own API client (``dockyard.client.Client``) on this host's engine, mutual TLS."""
        from dockyard.client import Client, DaemonAddress, TlsFiles

        tls = TlsFiles(ca=str(self.cert_path / "ca.pem"), cert=str(self.cert_path / "cert.pem"),
                       key=str(self.cert_path / "key.pem"))
        return Client(DaemonAddress.parse(self.url, tls=tls, verify=True), timeout=timeout)

    def bootstrap(self, image: str = "busybox") -> None:
        """Make the offline ``busybox`` image on this host's engine, through its API (a fresh
        engine has no images and the hosts reach no registry)."""
        self.client().post("/dockyard/images/bootstrap", name=image)

    @property
    def log(self) -> str:
        """The host engine's log (as far as the driver records where it is)."""
        root = self.host.extra.get("root")
        try:
            return (Path(root) / "daemon.log").read_text(errors="replace") if root else ""
        except FileNotFoundError:
            return ""


@dataclass
class NetnsHosts:
    """Creates netns hosts through a kernel's provision driver and removes them all at
    :meth:`close`. Build one with :meth:`open`. With ``owners``, each host's engine's owner
    token (``Host.extra["engine_owner"]``) and directories are recorded as it is made, so the
    leak checks see what an engine leaves on the machine (a container that escaped the host's
    cgroup and outlived it)."""

    kernel: Kernel
    driver: Provisioner
    ca: TestCA
    root: Path
    hosts: list[NetnsHost] = field(default_factory=list)
    owners: Owners | None = None
    _count: int = 0

    @classmethod
    async def open(cls, root: Path, subnet: str | None = None, owners: Owners | None = None,
                   subnet_base: str = NETNS_SUBNET_BASE) -> NetnsHosts:
        """A kernel on ``root`` (keep it short: hosts' unix sockets live below it) whose netns
        driver hands out addresses of ``subnet`` (default: a random free /24 of
        ``subnet_base``, retried if a parallel session claims it first). ``owners`` records the
        kernel's owner token and root for the leak checks."""
        from dockyard.config import Config
        from dockyard.errors import InvalidArgument
        from dockyard.kernel import Kernel

        from ..conformance.network import free_test_subnet
        from .tls import TestCA

        root.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            chosen = subnet or await asyncio.to_thread(free_test_subnet, subnet_base, 24)
            config = Config(values={"data-root": str(root / "d"), "exec-root": str(root / "r"),
                                    "provision-opts": [f"subnet={chosen}"]})
            kernel = Kernel.build(config, autoload=False, environ={})
            if owners is not None:
                owners.record(kernel.config.owner, root)
            try:
                driver = await kernel.driver_ready("provision", "netns")
            except InvalidArgument:
                await kernel.stop()
                if subnet is not None or attempt == 4:
                    raise
                continue  # another session took that range between the check and the claim
            assert isinstance(driver, _provisioner())
            return cls(kernel=kernel, driver=driver, ca=TestCA(), root=root, owners=owners)
        raise AssertionError("unreachable")

    async def create(self, n: int = 1, prefix: str = "h", *, engine_options: Sequence[str] = (),
                     labels: dict[str, str] | None = None,
                     engine_env: Mapping[str, str] | None = None) -> list[NetnsHost]:
        """``n`` new hosts, made in parallel (named ``<prefix><number>``), each running and
        answering. ``engine_env`` is added to every engine's environment (Docker Machine's
        ``--engine-env``; :func:`~dockyard_plugin_sdk.testing.engine_plugins_env` loads a test's
        own plugin module). A failure removes the hosts of this call and raises the first error."""
        from dockyard import provisioning
        from dockyard.specs.provision import HostRequest

        names = [f"{prefix}{self._count + i + 1}" for i in range(n)]
        self._count += n

        def server_tls(prepared: Host) -> EngineTLS:
            """The engine's certificate; first, its owner and directories are recorded for the
            leak checks (the host is prepared, its engine not started: one that fails to start
            may still leave something)."""
            extra = prepared.extra or {}
            if self.owners is not None and extra.get("engine_owner"):
                self.owners.record(str(extra["engine_owner"]), *(str(extra[k]) for k in ("root", "run") if extra.get(k)))
            return self.ca.engine_tls(prepared.addresses)

        async def one(name: str) -> NetnsHost:
            request = HostRequest(name=name, engine_options=list(engine_options), labels=dict(labels or {}),
                                  engine_env=dict(engine_env or {}))
            host = await provisioning.provision(self.kernel, self.driver, request, server_tls)
            scratch = self.root / "clients" / name
            return NetnsHost(host=host, cert_path=self.ca.write_client(scratch / "certs"), scratch=scratch)

        results = await asyncio.gather(*(one(name) for name in names), return_exceptions=True)
        made = [r for r in results if isinstance(r, NetnsHost)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await asyncio.gather(*(self.driver.remove(h.host) for h in made), return_exceptions=True)
            raise errors[0]
        self.hosts.extend(made)
        return made

    async def remove(self, host: NetnsHost) -> None:
        await self.driver.remove(host.host)
        if host in self.hosts:
            self.hosts.remove(host)

    async def close(self) -> list[str]:
        """Remove every host, stop the kernel (the driver deletes its bridge), delete ``root``.
        Returns what went wrong (the fixture fails the test with it)."""
        errors: list[str] = []
        results = await asyncio.gather(*(self.driver.remove(h.host) for h in self.hosts), return_exceptions=True)
        for h, r in zip(self.hosts, results, strict=True):
            if isinstance(r, BaseException):
                errors.append(f"removing host {h.name}: {r}")
        self.hosts.clear()
        await self.kernel.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        return errors


@dataclass
class NetnsCluster:
    """What :func:`netns_cluster` made."""

    root: Path
    netns: NetnsHosts
    etcd: Any  # dockyard_plugin_sdk.testing.etcd.EtcdCluster
    url: str  # etcd://GW:PORT/PREFIX, the engines' --cluster-store
    gateway: str  # the hosts' bridge address on this machine, where etcd listens
    store_options: list[str]  # KEY=VALUE: etcd's client TLS (--cluster-store-opt, a daemon's cluster-opts)
    options: list[str]  # every engine's flags
    hosts: list[NetnsHost]


@asynccontextmanager
async def netns_cluster(root: Path, n: int, *, owners: Owners, prefix: str, heartbeat: float = 0.5, ttl: float = 2,
                        engine_options: Sequence[str] = (), image: str | None = "busybox",
                        engine_env: Mapping[str, str] | None = None) -> AsyncIterator[NetnsCluster]:
    """``n`` netns hosts on ``root`` (short: unix sockets live below it) whose engines joined a
    one-member etcd with mutual TLS on the hosts' bridge gateway, under the key prefix
    ``PREFIX<random>``, with heartbeat and TTL in seconds (``engine_options`` come first, and
    ``engine_env`` is added to the engines' environment), each with ``image`` bootstrapped. At the end the hosts are removed, etcd is closed and ``root``
    deleted; AssertionError names what could not be removed. The caller checks
    :func:`netns_hosts_unavailable` and ``etcd_unavailable`` first."""
    from .etcd import start_etcd

    netns = await NetnsHosts.open(root / "n", owners=owners)
    etcd = None
    try:
        gateway = str(netns.driver.gateway.ip)
        # off loopback, always TLS: etcd takes clients with a certificate of its throwaway CA
        etcd = await asyncio.to_thread(start_etcd, root / "etcd", 1, gateway, tls=True)
        owners.record(etcd.token, etcd.root)
        url = etcd.url(f"{prefix}{uuid.uuid4().hex[:6]}")
        kv = [f"{k}={v}" for k, v in etcd.store_options.items()]
        options = [*engine_options, "--cluster-store", url, "--cluster-advertise", "eth0:2376",
                   "--cluster-store-opt", f"discovery.heartbeat={heartbeat:g}",
                   "--cluster-store-opt", f"discovery.ttl={ttl:g}"]
        for item in kv:
            options += ["--cluster-store-opt", item]
        hosts = await netns.create(n, engine_options=options, engine_env=engine_env)
        if image:
            await asyncio.gather(*(asyncio.to_thread(h.bootstrap, image) for h in hosts))
        yield NetnsCluster(root=root, netns=netns, etcd=etcd, url=url, gateway=gateway, store_options=kv,
                           options=options, hosts=hosts)
    finally:
        errors = await netns.close()
        if etcd is not None:
            etcd.close()
        shutil.rmtree(root, ignore_errors=True)
        assert not errors, errors


def _provisioner() -> type[Any]:
    from dockyard.specs.provision import Provisioner

    return Provisioner
