"""Legacy links (``--link name:alias``) on the default bridge, as dockerd keeps them.

A link is recorded in ``HostConfig.links`` in dockerd's inspect form, ``/<target>:/<this
container>/<alias>``. At start the target must be running; the container then gets dockerd's
link environment (``ALIAS_PORT_80_TCP_ADDR``..., ``ALIAS_NAME``, ``ALIAS_ENV_<var>``) and a
hosts line ``<ip> <alias> <hostname> <name>``. ``docker rm --link /<this>/<alias>`` removes
the record (``DELETE /containers/<this>/<alias>?link=1``). Links to a removed container are
dropped from what inspect shows, as dockerd's link graph forgets them.
"""

from __future__ import annotations

from collections.abc import Callable

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import Container


def parse(link: str) -> tuple[str, str]:
    """``name[:alias]`` (the CLI's form) or ``/target:/parent/alias`` (inspect's) ->
    (target name, alias)."""
    target, _, alias = link.partition(":")
    target = target.lstrip("/")
    alias = (alias.rsplit("/", 1)[-1] if alias else target)
    if not target or not alias:
        raise InvalidArgument(f"invalid link: {link!r}")
    return target, alias


def resolve(links: list[str], name: str, get: Callable[[str], Container]) -> list[str]:
    """The create request's links in inspect's form, each target checked to exist."""
    out = []
    for link in links:
        target_ref, alias = parse(link)
        try:
            target = get(target_ref)
        except NotFound:
            raise InvalidArgument(f"could not get container for {target_ref}") from None
        if target.host_config.network_mode == "host":
            raise InvalidArgument("conflicting options: host type networking can't be used with links. "
                                  "This would result in undefined behavior")
        out.append(f"/{target.name}:/{name}/{alias}")
    return out


def targets(c: Container, get: Callable[[str], Container]) -> list[tuple[str, Container]]:
    """(alias, target) of each link whose target still exists."""
    out = []
    for link in c.host_config.links:
        target_ref, alias = parse(link)
        try:
            out.append((alias, get(target_ref)))
        except NotFound:
            continue
    return out


def running_targets(c: Container, get: Callable[[str], Container]) -> list[tuple[str, Container]]:
    found = targets(c, get)
    for alias, target in found:
        if not target.state.running:
            raise Conflict(f"Cannot link to a non running container: /{target.name} AS /{c.name}/{alias}")
    return found


def _address(target: Container) -> str:
    ep = target.networks.get("bridge") or next(iter(target.networks.values()), None)
    return ep.ipv4_address.split("/")[0] if ep is not None else ""


def environment(c: Container, alias: str, target: Container) -> list[str]:
    """dockerd's ``Link.ToEnv`` for one link (contiguous port ranges are listed port by port)."""
    prefix = alias.upper().replace("-", "_")
    ip = _address(target)
    ports = sorted(target.config.exposed_ports,
                   key=lambda p: (int(p.partition("/")[0]), p.partition("/")[2] or "tcp"))
    env = []
    if ports:
        port, _, proto = ports[0].partition("/")
        env.append(f"{prefix}_PORT={proto or 'tcp'}://{ip}:{port}")
    for p in ports:
        port, _, proto = p.partition("/")
        proto = proto or "tcp"
        key = f"{prefix}_PORT_{port}_{proto.upper()}"
        env += [f"{key}={proto}://{ip}:{port}", f"{key}_ADDR={ip}", f"{key}_PORT={port}", f"{key}_PROTO={proto}"]
    env.append(f"{prefix}_NAME=/{c.name}/{alias}")
    for entry in target.config.env:
        key, sep, value = entry.partition("=")
        if sep and key not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{key}={value}")
    return env


def hosts_line(alias: str, target: Container) -> str:
    names = [alias, target.config.hostname]
    if alias != target.name:
        names.append(target.name)
    return f"{_address(target)}\t" + " ".join(dict.fromkeys(n for n in names if n))


def without(c: Container, link_name: str) -> list[str]:
    """``c``'s links without ``/<c>/<alias>`` (NotFound when it has no such link)."""
    alias = link_name.rsplit("/", 1)[-1]
    kept = [link for link in c.host_config.links if parse(link)[1] != alias]
    if len(kept) == len(c.host_config.links):
        raise NotFound(f"No such container: {link_name.lstrip('/')}")
    return kept
