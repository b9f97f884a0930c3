"""What a container's start takes and its exit gives back, composed from the drivers.

A start mounts the rootfs (``storage`` driver) and the volumes (``volumes`` service), has the
runtime driver make a network sandbox (``create_sandbox``: a network namespace), connects it
to each network (``networks`` service: IPAM address, ``driver.join``, port rules, DNS
records) and writes the /etc files the runtime binds (hostname, hosts, resolv.conf). :meth:`Setup.release` gives all of it back, in parallel,
when the process has exited; with ``remove_layer`` the read-write layer goes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, NotFound
from dockyard.model import Container, Mount
from dockyard.specs.network import PortMapping
from dockyard_engine import links as linkmod
from dockyard_engine.container_context import LIVE_STATES, ContainerContext

log = logging.getLogger(__name__)

HOSTS_HEADER = ("127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
                "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters")


class Setup:
    """The rootfs, volumes, network sandbox, endpoints and /etc files of a container's run."""

    def __init__(self, ctx: ContainerContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------ volumes
    async def mount_volumes(self, c: Container) -> list[Mount]:
        """``c.mounts`` with each volume's source filled in (the volume mounted for ``c``)."""
        resolved: list[Mount] = []
        done: list[Mount] = []
        try:
            for m in c.mounts:
                r = dataclasses.replace(m)
                if m.type == "volume":
                    r.source = await self.ctx.volumes.mount(m.name, c.id, destination=m.destination,
                                                            read_only=m.read_only)
                    m.source = r.source
                    done.append(m)
                resolved.append(r)
        except BaseException:
            await self.unmount_volumes(c, done)
            raise
        return resolved

    async def unmount_volumes(self, c: Container, mounts: list[Mount] | None = None) -> None:
        for m in (mounts if mounts is not None else c.mounts):
            if m.type != "volume" or not m.name:
                continue
            try:
                await self.ctx.volumes.unmount(m.name, c.id)
            except NotFound:
                pass
            except Exception:  # noqa: BLE001
                log.exception("could not release volume %s of %s", m.name, c.name)

    async def remove_anonymous_volumes(self, c: Container) -> None:
        """dockerd's ``rm -v``: the container's anonymous volumes go, named ones stay."""
        for m in c.mounts:
            if m.type != "volume" or not m.name:
                continue
            try:
                if not self.ctx.volumes.get(m.name).anonymous:
                    continue
                await self.ctx.volumes.remove(m.name)
            except (Conflict, NotFound):
                pass
            except Exception:  # noqa: BLE001
                log.exception("could not remove volume %s", m.name)

    async def retake(self, c: Container) -> None:
        """Live-restore: take again the references a start took for a container that kept
        running while the daemon was away (its rootfs and volume mounts)."""
        await (await self.ctx.storage()).mount(c.id)
        await self.mount_volumes(c)

    # ------------------------------------------------------------------ network
    async def setup_network(self, c: Container) -> tuple[str | None, str]:
        """(namespace for ``RuntimeCreateRequest.netns_path``, the sandbox key of the container's
        own sandbox or "" when it has none)."""
        mode = c.host_config.network_mode or "default"
        if mode == "host":
            await self._connect_all(c, "")
            return "host", ""
        if mode.startswith("container:"):
            other = self.ctx.get(mode.split(":", 1)[1])
            if other.state.status not in LIVE_STATES:
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            path = other.state.sandbox_key or f"/proc/{other.state.pid}/ns/net"
            if other.host_config.network_mode == "host":
                return "host", ""
            return path, ""
        key = await self.open_sandbox(c)
        try:
            await self.join_sandbox(c, key)
        except BaseException:
            await (await self.ctx.runtime(c)).remove_sandbox(c.id, key)
            raise
        return key, key

    def sandbox_first(self, c: Container) -> bool:
        """Whether ``c``'s own sandbox can be made first and its networks joined while the
        runtime creates the container (:meth:`open_sandbox`, :meth:`join_sandbox`): it has a
        sandbox of its own, and no ``net.*`` sysctl, which the runtime sets at create and which
        may name an interface the join makes."""
        mode = c.host_config.network_mode or "default"
        return (mode != "host" and not mode.startswith("container:")
                and not any(k.startswith("net.") for k in c.host_config.sysctls))

    async def open_sandbox(self, c: Container) -> str:
        """``c``'s own network sandbox, nothing joined yet; its key."""
        return await (await self.ctx.runtime(c)).create_sandbox(c.id)

    async def join_sandbox(self, c: Container, key: str) -> None:
        """Join ``c``'s networks inside the sandbox ``key`` (:meth:`setup_network`'s second
        half; on failure the caller's :meth:`teardown_network` removes the sandbox)."""
        await self._connect_all(c, key)

    async def _connect_all(self, c: Container, netns: str) -> None:
        svc = self.ctx.networks
        if svc is None:
            return
        ports = port_mappings(c)
        connected: list[str] = []
        # the ports go with the first network, unless it is a global-scope one (overlay: its
        # gateway bridge publishes them) and a later local non-internal network, which makes
        # the gateway bridge unnecessary, can
        port_net = next(iter(c.networks), "")
        for name in c.networks:
            with contextlib.suppress(Exception):
                net = svc.get(name)
                if net.scope != "global" and not net.internal:
                    port_net = name
                    break
        try:
            first = True
            for name, ep in list(c.networks.items()):
                mac = ep.mac_address or (c.config.mac_address if first else "")
                settings = await svc.connect(c, name, netns, aliases=list(ep.aliases),
                                             ipv4=ep.ipam_ipv4 or ep.ipv4_address or None,
                                             ipv6=ep.ipam_ipv6 or None, ports=ports if name == port_net else None,
                                             mac_address=mac, dns_servers=list(c.host_config.dns) or None,
                                             driver_opts=dict(ep.driver_opts) or None,
                                             link_local_ips=list(ep.link_local_ips) or None)
                settings.driver_opts = dict(ep.driver_opts)
                settings.ipam_ipv4, settings.ipam_ipv6 = ep.ipam_ipv4, ep.ipam_ipv6
                settings.link_local_ips = list(ep.link_local_ips)
                first = False
                connected.append(name)
                c.networks[name] = settings
            # Docker's docker_gwbridge for a container only an overlay would leave without egress
            await svc.update_gateway_bridge(c, netns)
        except BaseException:
            for name in connected:
                with contextlib.suppress(Exception):
                    await svc.disconnect(c, name, force=True)
            with contextlib.suppress(Exception):
                await svc.disconnect_all(c)
            raise

    async def teardown_network(self, c: Container, sandbox: str) -> None:
        """Leave every network, then have the runtime driver remove ``sandbox`` (the key of the
        container's own sandbox; "" = none)."""
        svc = self.ctx.networks
        if svc is not None:
            try:
                # a sandbox of our own is removed just below: drivers may leave its
                # interfaces to the kernel (see EndpointRequest.sandbox_closing)
                await svc.disconnect_all(c, sandbox_closing=bool(sandbox))
            except Exception:  # noqa: BLE001
                log.exception("could not disconnect %s", c.name)
        for ep in c.networks.values():
            ep.endpoint_id = ""
            ep.ipv4_address = ""
            ep.gateway = ""
            ep.ip_prefix_len = 0
            ep.mac_address = ""
        if sandbox:
            await (await self.ctx.runtime(c)).remove_sandbox(c.id, sandbox)

    # ------------------------------------------------------------------ links and namespaces
    def link_env(self, c: Container) -> list[str]:
        """The legacy links' variables (each target must be running, as dockerd requires). On
        a user-defined network dockerd sets none: a link is only a name there (our hosts line)."""
        env: list[str] = []
        legacy = c.host_config.network_mode in ("default", "bridge", "")
        for alias, target in linkmod.running_targets(c, self.ctx.get):
            if legacy:
                env += linkmod.environment(c, alias, target)
        return env

    def shared_namespaces(self, c: Container) -> dict[str, str]:
        """``--pid``/``--ipc container:<id>``: the other container's namespace paths."""
        out = {}
        for kind, mode in (("pid", c.host_config.pid_mode), ("ipc", c.host_config.ipc_mode)):
            if not mode.startswith("container:"):
                continue
            other = self.ctx.get(mode.split(":", 1)[1])
            if other.state.status not in LIVE_STATES or not other.state.pid:
                raise Conflict(f"cannot join {kind.upper()} of a non running container: {other.id}")
            out[kind] = f"/proc/{other.state.pid}/ns/{kind}"
        return out

    # ------------------------------------------------------------------ IPC
    def shm_dir(self, c: Container) -> Path:
        return self.ctx.cdir(c.id) / "shm"

    async def shm_mounts(self, c: Container) -> list[Mount]:
        """/dev/shm shared as dockerd shares it: a ``shareable`` container's is a tmpfs on the
        host (``<container dir>/shm``), bound into it and into every ``--ipc container:<it>``;
        joining a container whose IPC is ``host`` binds the host's /dev/shm."""
        mode = c.host_config.ipc_mode
        if mode == "shareable":
            path = self.shm_dir(c)
            await asyncio.to_thread(self._mount_shm, path, c.host_config.shm_size or 64 * 1024 * 1024)
            return [Mount(type="bind", destination="/dev/shm", source=str(path), propagation="rprivate")]
        if mode.startswith("container:"):
            donor = self.ctx.get(mode.split(":", 1)[1])
            if donor.host_config.ipc_mode == "host":
                return [Mount(type="bind", destination="/dev/shm", source="/dev/shm", propagation="rprivate")]
            if donor.host_config.ipc_mode != "shareable":
                raise Conflict("non-shareable IPC (hint: use IpcMode:shareable for the donor container)")
            return [Mount(type="bind", destination="/dev/shm", source=str(self.shm_dir(donor)),
                          propagation="rprivate")]
        return []

    @staticmethod
    def _mount_shm(path: Path, size: int) -> None:
        from dockyard import mounts

        path.mkdir(parents=True, exist_ok=True)
        if any(m.point == str(path) for m in mounts.read_mounts()):
            return  # still mounted (the daemon restarted while the container ran)
        mounts.mount("shm", str(path), fstype="tmpfs",
                     options=f"nosuid,nodev,noexec,mode=1777,size={size}")

    async def release_shm(self, c: Container) -> None:
        if c.host_config.ipc_mode == "shareable":
            from dockyard import mounts

            with contextlib.suppress(Exception):
                await asyncio.to_thread(mounts.umount, str(self.shm_dir(c)), True)

    # ------------------------------------------------------------------ /etc files
    async def etc_files(self, c: Container) -> dict[str, str]:
        """Write hostname, hosts and resolv.conf; their paths as ``RuntimeCreateRequest``
        fields. ``container:<id>`` mode gets the namespace owner's names and files (dockerd)."""
        mode = c.host_config.network_mode
        if not mode.startswith("container:"):
            return await asyncio.to_thread(self._write_etc_files, c)
        other = self.ctx.get(mode.split(":", 1)[1])
        c.config.hostname, c.config.domainname = other.config.hostname, other.config.domainname
        files = await asyncio.to_thread(self._write_etc_files, c)
        files["hosts_path"] = str(self.ctx.cdir(other.id) / "hosts")
        files["resolv_conf_path"] = str(self.ctx.cdir(other.id) / "resolv.conf")
        return files

    def _write_etc_files(self, c: Container) -> dict[str, str]:
        d = self.ctx.cdir(c.id)
        d.mkdir(parents=True, exist_ok=True)
        hostname = c.config.hostname
        (d / "hostname").write_text(hostname + "\n")
        if c.host_config.network_mode == "host":
            shutil.copyfile("/etc/hosts", d / "hosts")
        else:
            lines = list(HOSTS_HEADER)
            for entry in c.host_config.extra_hosts:
                host, _, ip = entry.partition(":")
                lines.append(f"{ip}\t{host}")
            for alias, target in linkmod.targets(c, self.ctx.get):
                lines.append(linkmod.hosts_line(alias, target))
            for ep in c.networks.values():
                if ep.ipv4_address:
                    full = f"{hostname}.{c.config.domainname}" if c.config.domainname else hostname
                    lines.append(f"{ep.ipv4_address}\t{full}" + ("" if full == hostname else f" {hostname}"))
                    break
            (d / "hosts").write_text("\n".join(lines) + "\n")
        (d / "resolv.conf").write_text(self._resolv_conf(c))
        return {"hosts_path": str(d / "hosts"), "resolv_conf_path": str(d / "resolv.conf"),
                "hostname_path": str(d / "hostname")}

    def _resolv_conf(self, c: Container) -> str:
        return resolv_conf(c, self.ctx.networks)

    # ------------------------------------------------------------------ release
    async def release(self, c: Container, sandbox: str, remove_layer: bool = False) -> None:
        """Give back what start took (rootfs mount, volumes, endpoints and the sandbox), in
        parallel; with ``remove_layer`` the read-write layer goes too."""
        drv = await self.ctx.storage()

        async def rootfs() -> None:
            with contextlib.suppress(Exception):
                await drv.unmount(c.id)
            if remove_layer:  # the images service also collects layers nothing uses any more
                with contextlib.suppress(NotFound):
                    await self.ctx.images.remove_rootfs(c.id)

        await asyncio.gather(rootfs(), self.unmount_volumes(c), self.teardown_network(c, sandbox),
                             self.release_shm(c))


def resolv_conf(c: Container, svc: Any) -> str:
    """The container's resolv.conf: the embedded resolver (127.0.0.11) when one of its networks
    has one, else ``--dns`` or the host's non-loopback servers."""
    embedded = False
    if svc is not None and c.host_config.network_mode != "host":
        for name in c.networks:
            with contextlib.suppress(Exception):
                embedded = embedded or svc.uses_embedded_dns(name)
    if embedded:
        servers = ["127.0.0.11"]
    elif c.host_config.dns:
        servers = list(c.host_config.dns)
    else:
        from dockyard_engine.networks import host_nameservers

        servers = [s for s in host_nameservers() if not s.startswith("127.")] or ["8.8.8.8", "8.8.4.4"]
    lines = [f"nameserver {s}" for s in servers]
    if c.host_config.dns_search:
        lines.append("search " + " ".join(c.host_config.dns_search))
    opts = list(c.host_config.dns_options) + (["ndots:0"] if embedded else [])
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n"


def rewrite_resolv_conf(path: Path, c: Container, svc: Any) -> None:
    """A running container's resolv.conf after ``docker network connect``: dockerd switches a
    container that joins a user-defined network to the embedded resolver. Written in place
    (the runtime bound this inode into the container)."""
    text = resolv_conf(c, svc)
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() != text:
            with open(path, "r+") as fh:
                fh.write(text)
                fh.truncate()


def port_mappings(c: Container) -> list[PortMapping]:
    """The container's published ports (``-p``, and ``-P``'s exposed ports) as the network
    service takes them."""
    ports = []
    for port_proto, bindings in c.host_config.port_bindings.items():
        port, _, proto = port_proto.partition("/")
        for b in bindings or [None]:
            hp = str(b.host_port or "") if b is not None else ""
            lo, _, hi = hp.partition("-")
            ports.append(PortMapping(container_port=int(port), protocol=proto or "tcp",
                                     host_ip=b.host_ip if b is not None else "",
                                     host_port=int(lo or 0), host_port_end=int(hi or 0)))
    if c.host_config.publish_all_ports:
        bound = {(p.container_port, p.protocol) for p in ports}
        for exposed in c.config.exposed_ports:
            port, _, proto = exposed.partition("/")
            if (int(port), proto or "tcp") not in bound:
                ports.append(PortMapping(container_port=int(port), protocol=proto or "tcp"))
    return ports
