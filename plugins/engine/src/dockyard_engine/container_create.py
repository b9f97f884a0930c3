"""Creating a container: names, the image's config merged into the request, the mount plan.

``create`` checks the name (409 on a clash), resolves the image through the ``images``
service, merges the image config, plans the mounts, prepares the read-write layer on the
image's top layer (the ``storage`` driver), creates named and anonymous volumes and writes
the :class:`~dockyard.model.Container` in one transaction; then it emits ``create``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import shutil
from collections.abc import Callable
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import (
    Container,
    ContainerConfig,
    EndpointSettings,
    Healthcheck,
    Image,
    Mount,
    new_id,
)
from dockyard.services.containers import ContainerCreate
from dockyard_engine import health as healthmod
from dockyard_engine import links as linkmod
from dockyard_engine import restart as policy
from dockyard_engine.container_checks import check_create
from dockyard_engine.container_context import ContainerContext

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_LEFT = ("admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy", "jolly",
         "keen", "loving", "modest", "nifty", "optimistic", "peaceful", "quirky", "relaxed", "serene",
         "tender", "upbeat", "vibrant", "wizardly", "youthful", "zealous")
_RIGHT = ("albattani", "babbage", "curie", "darwin", "euclid", "fermi", "galileo", "hopper", "hypatia",
          "joliot", "kepler", "lovelace", "mayer", "noether", "pasteur", "ritchie", "shannon", "tesla",
          "turing", "volta", "wozniak", "yonath", "zhukovsky")


def random_name(taken: Callable[[str], bool]) -> str:
    """dockerd-style ``adjective_scientist``, with a number after a few clashes."""
    for i in range(100):
        name = f"{random.choice(_LEFT)}_{random.choice(_RIGHT)}"
        if i > 5:
            name += str(random.randint(0, 99))
        if not taken(name):
            return name
    return "c_" + new_id()[:12]


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """``KEY=value`` lists merged: a key of ``extra`` replaces the same key of ``base`` in place."""
    order: list[str] = []
    values: dict[str, str] = {}
    for item in list(base) + list(extra):
        key = item.split("=", 1)[0]
        if key not in values:
            order.append(key)
        values[key] = item
    return [values[k] for k in order]


def check_name_syntax(name: str) -> None:
    if not name or not NAME_RE.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


def runnable(rt: Any, img: Image) -> tuple[str, str]:
    """``(image platform, "native"|"emulated"|"")`` for the runtime driver ``rt`` running
    ``img`` (its ``platforms()``: native first, then emulated ones). An image this host cannot
    run is still created, as dockerd does (the CLI warns); its start is refused by
    :func:`check_runnable`. An image without an architecture (very old ones) is native."""
    from dockyard import platforms

    if not img.architecture:
        return "", "native"
    plat = platforms.normalize(platforms.Platform(img.os or "linux", img.architecture, img.variant or ""))
    return str(plat), platforms.Runnable.of(rt.platforms()).how(plat)


def check_runnable(rt: Any, image_platform: str) -> bool:
    """Whether ``rt`` runs ``image_platform`` emulated (False: natively); raises, naming how to
    enable emulation, when it cannot run it at all (checked at each start: a registration made
    after the create counts)."""
    from dockyard import platforms

    plat = platforms.parse(image_platform)
    how = platforms.Runnable.of(rt.platforms()).how(plat)
    if how:
        return how == "emulated"
    native = ", ".join(str(p) for p in rt.platforms() if not p.emulated) or "none"
    hint = ("; to run it under emulation, register qemu-user-static with binfmt_misc: "
            "`dockyard system binfmt install` (as root; qemu-user-static must be installed)"
            if plat.os == "linux" else "")
    raise InvalidArgument(f"image platform {plat} does not run on this host (native: {native}; no emulator is "
                          f"registered for {plat}){hint}")


class Creation:
    """``create``, and the name rules ``rename`` shares."""

    def __init__(self, ctx: ContainerContext) -> None:
        self.ctx = ctx

    async def create(self, req: ContainerCreate) -> Container:
        ctx = self.ctx
        rt = await ctx.runtime()
        await rt.expect_start()  # a start likely follows (docker run): the driver may begin its host work
        if req.name:
            check_name_syntax(req.name)
            name = req.name.lstrip("/")
            self.check_name_free(name)
        else:
            name = random_name(lambda n: ctx.store.by_name(Container, n) is not None)
        hc = req.host_config
        policy.validate(hc.restart_policy, hc.auto_remove)
        check_create(req)
        if not req.config.image:
            raise InvalidArgument("No image was specified")
        img = self._image(req.config.image)
        if req.platform:  # a multi-platform tag: its member for that platform; else the image must run it
            img = ctx.images.resolve_platform(req.config.image, req.platform)
        await self._check_image_policy(req.config.image, img)
        cfg = merge_config(req, img)
        cid = new_id()
        if not cfg.hostname:
            shared = hc.network_mode == "host" or hc.uts_mode == "host"
            cfg.hostname = os.uname().nodename if shared else cid[:12]
        for mode in (hc.network_mode, hc.pid_mode, hc.ipc_mode):
            if mode.startswith("container:"):
                ctx.get(mode.split(":", 1)[1])
        if hc.links:
            hc.links = linkmod.resolve(hc.links, name, ctx.get)
        hc.runtime = rt.resolve_runtime(hc.runtime)  # the one that will run it, for inspect's Runtime
        image_platform, how = runnable(rt, img)  # "" (cannot run here): created, refused at start
        c = Container(id=cid, name=name, image_id=img.id, config=cfg, host_config=hc,
                      runtime=rt.info.name, platform=img.os or "linux", image_platform=image_platform,
                      emulated=how == "emulated")
        c.networks = self._initial_networks(c, req.networks)
        c.mounts = plan_mounts(c)
        drv = await ctx.storage()
        c.driver = drv.info.name
        await drv.prepare(cid, ctx.images.top_layer_key(img))
        try:
            ctx.cdir(cid).mkdir(parents=True, exist_ok=True)
            c.log_path = str(ctx.cdir(cid) / "ctr.log")
            await self._create_volumes(c)
            for attempt in range(10):
                try:
                    ctx.put(c)
                    break
                except Conflict:
                    if req.name or attempt == 9:
                        raise
                    # creates at once drew the same generated name: draw again, as dockerd does
                    c.name = random_name(lambda n: ctx.store.by_name(Container, n) is not None)
        except BaseException:
            with contextlib.suppress(Exception):
                await drv.remove(cid)
            shutil.rmtree(ctx.cdir(cid), ignore_errors=True)
            raise
        ctx.emit(c, "create")
        return c

    def _image(self, ref: str) -> Image:
        """The image of ``ref``; a reference that cannot name one is a 400 ("invalid reference
        format"), as dockerd answers, rather than the 404 that makes a client pull."""
        try:
            return self.ctx.image(ref)
        except NotFound:
            from dockyard.reference import parse_normalized

            parse_normalized(ref)
            raise

    async def _check_image_policy(self, ref: str, img: Image) -> None:
        """Core's ``ImagePolicy`` (when a plugin offers one) judges an image already present
        before a container is made of it: the name it was asked by (an ID: its first tag) and
        its top-level digest in that repository (from ``repo_digests``, "" when unknown)."""
        from dockyard.reference import InvalidReference, parse_normalized
        from dockyard.specs.storage import ImageCheck, ImagePolicy

        found = self.ctx.kernel.provided().get(ImagePolicy)
        if found is None:
            return
        name = ref if ref not in (img.id, img.id[7:]) and not img.id[7:].startswith(ref) else (
            img.repo_tags[0] if img.repo_tags else "")
        reference, repo = "", ""
        if name:
            try:
                r = parse_normalized(name)
            except InvalidReference:
                r = None
            if r is not None:
                repo = r.name
                reference = f"{r.name}:{r.tag}" if r.tag and not r.digest else r.name
        digest = ""
        for d in img.repo_digests if repo else ():
            name, _, dig = d.partition("@")
            try:
                if parse_normalized(name, default_tag=False).name == repo:
                    digest = dig
                    break
            except InvalidReference:
                continue
        await found.check(self.ctx.kernel, ImageCheck(reference, digest, "create", img))

    def check_name_free(self, name: str) -> None:
        other = self.ctx.store.by_name(Container, name)
        if other is not None:
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                           f'"{other.id}". You have to remove (or rename) that container to be able to '
                           "reuse that name.")

    def _initial_networks(self, c: Container, requested: dict[str, EndpointSettings]) -> dict[str, EndpointSettings]:
        """The networks a container joins at start, by their names: the network mode's (the
        default bridge for ``default``) first, then the request's ``EndpointsConfig``."""
        mode = c.host_config.network_mode or "default"
        if mode.startswith("container:"):
            return {}
        primary = "bridge" if mode in ("default", "") else mode
        svc = self.ctx.networks
        if mode == "none" and svc is not None and svc.none_is_bare_namespace():
            return {}  # no null driver installed: the container's own namespace is "none"
        if svc is not None:
            primary = svc.get(primary).name
        nets: dict[str, EndpointSettings] = {}
        nets[primary] = requested.get(primary) or requested.get(mode) or requested.get("default") or EndpointSettings()
        if c.config.mac_address and not nets[primary].mac_address:
            nets[primary].mac_address = c.config.mac_address  # the legacy Config.MacAddress
        elif nets[primary].mac_address and not c.config.mac_address:
            c.config.mac_address = nets[primary].mac_address
        for name, ep in requested.items():
            if name in (mode, "default", primary):
                continue
            if svc is not None:
                name = svc.get(name).name
            nets[name] = ep
        for name, ep in nets.items():
            ep.network_id = ""
            ep.endpoint_id = ""
            if ep.ipam_ipv6 and svc is not None and not svc.get(name).enable_ipv6:
                raise InvalidArgument(f"invalid endpoint settings: {ep.ipam_ipv6}: network {name} does not have "
                                      "IPv6 enabled (docker network create --ipv6)")
        return nets

    async def _create_volumes(self, c: Container) -> None:
        for m in c.mounts:
            if m.type != "volume":
                continue
            driver = m.driver or c.host_config.volume_driver or "local"
            if m.name and driver == "local" and not c.host_config.volume_driver:
                # no driver asked for: an existing volume of any driver is used, as dockerd
                # does (``docker volume create -d PLUGIN v`` then ``docker run -v v:/data``)
                existing = next((v for v in self.ctx.volumes.list() if v.name == m.name), None)
                driver = existing.driver if existing is not None else driver
            vol = await self.ctx.volumes.create(m.name, driver, anonymous=not m.name)
            m.name, m.driver = vol.name, vol.driver


def merge_config(req: ContainerCreate, img: Image) -> ContainerConfig:
    """The request's config completed by the image's (entrypoint and cmd, env, labels, ports,
    volumes, stop signal, healthcheck) as dockerd merges them."""
    cfg = dataclasses.replace(req.config)
    ic = img.config
    if req.entrypoint is not None:
        cfg.entrypoint = [] if req.entrypoint in ([], [""]) else list(req.entrypoint)
        cfg.cmd = list(req.cmd or [])
    else:
        cfg.entrypoint = list(ic.entrypoint)
        cfg.cmd = list(req.cmd) if req.cmd else list(ic.cmd)
    if not cfg.entrypoint and not cfg.cmd:
        raise InvalidArgument("No command specified")
    cfg.env = merge_env(ic.env, cfg.env)
    if not any(e.startswith("PATH=") for e in cfg.env):
        cfg.env.insert(0, DEFAULT_PATH)
    cfg.working_dir = cfg.working_dir or ic.working_dir
    cfg.user = cfg.user or ic.user
    cfg.labels = {**ic.labels, **cfg.labels}
    cfg.exposed_ports = sorted(set(ic.exposed_ports) | set(cfg.exposed_ports)
                               | set(req.host_config.port_bindings))
    cfg.volumes = sorted(set(ic.volumes) | set(cfg.volumes))
    cfg.stop_signal = cfg.stop_signal or ic.stop_signal
    if ic.healthcheck is not None:
        if cfg.healthcheck is None:
            cfg.healthcheck = dataclasses.replace(ic.healthcheck)
        else:
            mine, base = cfg.healthcheck, ic.healthcheck
            cfg.healthcheck = Healthcheck(test=mine.test or base.test,
                                          interval=mine.interval or base.interval,
                                          timeout=mine.timeout or base.timeout,
                                          start_period=mine.start_period or base.start_period,
                                          retries=mine.retries or base.retries)
    if cfg.healthcheck is not None and healthmod.command_of(cfg.healthcheck) is None:
        cfg.healthcheck = cfg.healthcheck if cfg.healthcheck.test else None
    return cfg


def plan_mounts(c: Container) -> list[Mount]:
    """Binds, named and anonymous volumes, tmpfs, in the order the runtime mounts them."""
    mounts: list[Mount] = []
    for bind in c.host_config.binds:
        parts = bind.split(":")
        if len(parts) < 2:
            # "-v /data" arrives as a config volume, but tolerate it here
            mounts.append(Mount(type="volume", destination=parts[0], name=""))
            continue
        src, dst = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else ""
        opts = [o for o in mode.split(",") if o]
        ro = "ro" in opts
        if not dst.startswith("/"):
            raise InvalidArgument(f"invalid mount config: destination {dst!r} is not absolute")
        if src.startswith("/"):
            mounts.append(Mount(type="bind", source=src, destination=dst, read_only=ro,
                                options=[o for o in opts if o not in ("ro", "rw") and o not in PROPAGATIONS],
                                propagation=next((o for o in opts if o in PROPAGATIONS), "rprivate")))
        else:
            mounts.append(Mount(type="volume", name=src, destination=dst, read_only=ro,
                                driver=c.host_config.volume_driver or "local"))
    for m in c.host_config.mounts:
        m = dataclasses.replace(m)
        if m.type == "bind" and not m.propagation:
            m.propagation = next((o for o in m.options if o in PROPAGATIONS), "rprivate")
        mounts.append(m)
    for dst, opts in c.host_config.tmpfs.items():
        mounts.append(Mount(type="tmpfs", destination=dst, options=[o for o in opts.split(",") if o]))
    covered = {m.destination.rstrip("/") for m in mounts}
    for dst in c.config.volumes:
        if dst.rstrip("/") not in covered:
            mounts.append(Mount(type="volume", destination=dst, name="", driver=c.host_config.volume_driver or "local"))
    for m in mounts:
        if m.type == "bind" and m.source and not os.path.exists(m.source):
            os.makedirs(m.source, exist_ok=True)  # dockerd creates a missing bind source
    return mounts
