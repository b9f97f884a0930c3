"""Object model -> Docker API JSON shapes (PascalCase, as dockerd 20.10 answers)."""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from typing import Any

from dockyard.model import ZERO_TIME, Container, ContainerStatus


def unix_seconds(iso: str) -> int:
    if not iso or iso == ZERO_TIME:
        return 0
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def human_duration(seconds: float) -> str:
    """Go's ``units.HumanDuration``, which ``docker ps`` status strings use."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // (24 * 7)} weeks"
    if h < 24 * 365 * 2:
        return f"{h // (24 * 30)} months"
    return f"{h // (24 * 365)} years"


def status_text(c: Container, now: float | None = None) -> str:
    now = time.time() if now is None else now
    st = c.state
    if st.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
        text = "Up " + human_duration(now - unix_seconds(st.started_at))
        if st.status is ContainerStatus.PAUSED:
            text += " (Paused)"
        elif st.health is not None:
            text += f" (health: {st.health.status})" if st.health.status == "starting" else f" ({st.health.status})"
        return text
    if st.status is ContainerStatus.RESTARTING:
        return f"Restarting ({st.exit_code}) {human_duration(now - unix_seconds(st.finished_at))} ago"
    if st.status is ContainerStatus.EXITED:
        if unix_seconds(st.finished_at) == 0:
            return "Created" if unix_seconds(st.started_at) == 0 else f"Exited ({st.exit_code})"
        return f"Exited ({st.exit_code}) {human_duration(now - unix_seconds(st.finished_at))} ago"
    if st.status is ContainerStatus.REMOVING:
        return "Removal In Progress"
    if st.status is ContainerStatus.DEAD:
        return "Dead"
    return "Created"


def command_text(c: Container) -> str:
    args = (c.config.entrypoint or []) + (c.config.cmd or [])
    return " ".join(shlex.quote(a) if (" " in a or not a) else a for a in args)


def port_list(c: Container) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    published = set()
    for port_proto, bindings in sorted(c.host_config.port_bindings.items()):
        port, _, proto = port_proto.partition("/")
        for b in bindings:
            if not b.host_port:
                continue
            ip = b.host_ip or "0.0.0.0"
            out.append({"IP": ip, "PrivatePort": int(port), "PublicPort": int(b.host_port),
                        "Type": proto or "tcp"})
            published.add(port_proto)
    for port_proto in sorted(set(c.config.exposed_ports) - published):
        port, _, proto = port_proto.partition("/")
        out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out


def mount_list(c: Container) -> list[dict[str, Any]]:
    return [{"Type": m.type, "Name": m.name, "Source": m.source, "Destination": m.destination,
             "Driver": m.driver, "Mode": "", "RW": not m.read_only, "Propagation": m.propagation}
            for m in c.mounts]


def endpoint_json(ep: Any) -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": list(ep.aliases) or None,
            "NetworkID": ep.network_id, "EndpointID": ep.endpoint_id, "Gateway": ep.gateway,
            "IPAddress": ep.ipv4_address.split("/")[0], "IPPrefixLen": ep.ip_prefix_len,
            "IPv6Gateway": "", "GlobalIPv6Address": ep.ipv6_address, "GlobalIPv6PrefixLen": 0,
            "MacAddress": ep.mac_address, "DriverOpts": dict(ep.driver_opts) or None}


def container_summary(c: Container, image_ref: str) -> dict[str, Any]:
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.config.image or image_ref,
        "ImageID": c.image_id,
        "Command": command_text(c),
        "Created": unix_seconds(c.created),
        "Ports": port_list(c),
        "Labels": dict(c.config.labels),
        "State": c.state.status.value,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.network_mode},
        "NetworkSettings": {"Networks": {name: endpoint_json(ep) for name, ep in c.networks.items()}},
        "Mounts": mount_list(c),
    }
