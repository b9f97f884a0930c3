"""An engine's heartbeat: its ``nodes/<name>`` record, written again every interval on a lease.

Run inside an engine (``dockyardd --cluster-store URL --cluster-advertise ADDR:PORT``: the
``swarm-heartbeat`` background service of :mod:`dockyard_swarm.plugin`), or beside one
(``dockyard swarm join --advertise ADDR:PORT URL``: :func:`join` reads the engine's ``/info``).

Each beat refreshes the lease and puts the record again (the manager judges health by the
puts it sees). When the lease is gone (the engine was away longer than the TTL and was
dropped), the next beat takes a new lease and puts the record again: the node rejoins under
the same name, and the manager's rescheduler removes the copies it made elsewhere meanwhile.
A clean stop leaves the lease to expire (a restarted engine takes its record back before
that, and nothing is rescheduled for a restart).
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import logging
import math
import os
import platform
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument, LeaseNotFound, StoreUnavailable
from dockyard_swarm.membership import discovery_settings, encode, node_key

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.kernel import Kernel
    from dockyard.specs.cluster import ClusterStore, Lease

log = logging.getLogger("dockyard.swarm.heartbeat")

SIOCGIFADDR = 0x8915


def interface_address(name: str) -> str:
    """The IPv4 address of network interface ``name`` (dockerd's ``--cluster-advertise eth0:2376``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        except OSError as exc:
            raise InvalidArgument(f"cluster-advertise: interface {name!r} has no IPv4 address ({exc.strerror})") from None
    return socket.inet_ntoa(packed[20:24])


def resolve_advertise(value: str) -> str:
    """``ADDR:PORT`` from ``ADDR:PORT``, ``[V6]:PORT`` or ``IFACE:PORT``; anything else is an
    :class:`~dockyard.errors.InvalidArgument` naming the expected form."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"cluster-advertise {value!r}: expected ADDR:PORT or IFACE:PORT")
    bare = host.strip("[]")
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return f"{interface_address(host)}:{port}"
    if ip.is_unspecified:
        raise InvalidArgument(f"cluster-advertise {value!r}: an address others can reach, not {bare}")
    return f"[{bare}]:{port}" if ip.version == 6 else f"{bare}:{port}"


def labels_of(config: Config) -> dict[str, str]:
    out = {}
    for item in config.get("labels") or []:
        k, _, v = str(item).partition("=")
        out[k.strip()] = v.strip()
    return out


def _mem_total() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_release() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


async def engine_facts(kernel: Kernel) -> tuple[str, dict[str, Any]]:
    """``(node name, engine dict)`` of the engine this kernel runs: the hostname (a netns host's
    UTS name is the host's) and the fields the scheduler's constraints read."""
    f = kernel.facts()
    driver = ""
    platforms: list[dict[str, Any]] = []
    if kernel.has_service("system"):
        try:
            info = await kernel.system.info()
            driver = info.storage_driver
            platforms = [{"Platform": p, "Emulated": emulated} for p, emulated in info.platforms]
        except Exception:  # noqa: BLE001 - a field of the record, not worth failing the beat
            log.exception("engine info for the node record")
    return str(f["hostname"]), {
        "Name": str(f["hostname"]), "Cpus": os.cpu_count() or 1, "Memory": _mem_total(),
        "ServerVersion": str(f["version"]), "KernelVersion": str(f["kernel"]),
        "OperatingSystem": _os_release(), "OSType": str(f["os"]), "Driver": driver,
        "Architecture": platform.machine(), "ID": kernel.daemon_id, "Platforms": platforms,
    }


class Heartbeat:
    """Keeps ``nodes/<name>`` alive: :meth:`run` beats until cancelled."""

    def __init__(self, store: ClusterStore, name: str, advertise: str, interval: float, ttl: float,
                 describe: Callable[[], Awaitable[tuple[dict[str, str], dict[str, Any]]]]) -> None:
        self.store, self.name, self.advertise = store, name, advertise
        self.interval, self.ttl = interval, ttl
        self.describe = describe  # -> (labels, engine dict), asked at every beat
        self.lease: Lease | None = None
        self.beats = 0

    async def beat(self) -> None:
        """One heartbeat: refresh (or take) the lease, put the record."""
        labels, engine = await self.describe()
        record = {"name": self.name, "addr": self.advertise, "labels": labels, "engine": engine,
                  "heartbeat": time.time(), "interval": self.interval, "ttl": self.ttl}
        for _attempt in range(2):
            try:
                if self.lease is None:
                    self.lease = await self.store.grant(math.ceil(self.ttl))
                    log.info("node %s joins the cluster as %s (lease %x, ttl %gs)", self.name,
                             self.advertise, self.lease.id, self.ttl)
                else:
                    await self.store.keepalive(self.lease)
                await self.store.put(node_key(self.name), encode(record), self.lease)
                self.beats += 1
                return
            except LeaseNotFound:
                log.warning("node %s: lease expired (dropped from the cluster): joining again", self.name)
                self.lease = None

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except StoreUnavailable as exc:
                log.warning("node %s: heartbeat missed, the cluster store is unavailable: %s", self.name, exc)
            except Exception as exc:  # noqa: BLE001 - the engine did not answer (swarm join): no beat, so
                # the lease runs out and the node is dropped, as Swarm classic's agent did
                log.warning("node %s: heartbeat missed, the engine did not answer: %s", self.name, exc)
            await asyncio.sleep(self.interval)


async def run_in_engine(kernel: Kernel) -> None:
    """The ``swarm-heartbeat`` background service of an engine with ``cluster-advertise``."""
    advertise = resolve_advertise(str(kernel.config.get("cluster-advertise")))
    interval, ttl = discovery_settings(kernel.config)
    while True:  # an engine may start before its cluster store is reachable: join once it is
        try:
            store = await kernel.cluster_store()
            break
        except StoreUnavailable as exc:
            log.warning("cluster store unavailable, joining when it answers: %s", exc)
            await asyncio.sleep(interval)
    name, _ = await engine_facts(kernel)

    async def describe() -> tuple[dict[str, str], dict[str, Any]]:
        _, engine = await engine_facts(kernel)
        return labels_of(kernel.config), engine

    await Heartbeat(store, name, advertise, interval, ttl, describe).run()


def engine_from_info(info: dict[str, Any]) -> dict[str, Any]:
    """The record's engine dict from a Docker ``/info`` answer (``swarm join`` beside an engine)."""
    return {"Name": info.get("Name", ""), "Cpus": info.get("NCPU", 0), "Memory": info.get("MemTotal", 0),
            "ServerVersion": info.get("ServerVersion", ""), "KernelVersion": info.get("KernelVersion", ""),
            "OperatingSystem": info.get("OperatingSystem", ""), "OSType": info.get("OSType", ""),
            "Driver": info.get("Driver", ""), "Architecture": info.get("Architecture", ""),
            "ID": info.get("ID", ""), "Platforms": list(info.get("DockyardPlatforms") or [])}


def labels_from_info(info: dict[str, Any]) -> dict[str, str]:
    out = {}
    for item in info.get("Labels") or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out
