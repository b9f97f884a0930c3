"""Whole-project rules: profiles, environment, defaults, cross-references, ordering, hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dockyard_compose import model as m
from dockyard_compose.errors import ComposeError, ComposeValidationError
from dockyard_compose.interpolate import parse_env_file
from dockyard_compose.schema import dump


def apply_profiles(project: m.Project, profiles: Iterable[str], targets: Iterable[str],
                   file: str) -> dict[str, m.Service]:
    """Drop services whose profiles are all inactive; named targets are always enabled."""
    active = set(profiles)
    targets = list(targets)
    for t in targets:
        if t in project.services:
            active.update(project.services[t].profiles)
    if "*" in active:
        return {}
    disabled: dict[str, m.Service] = {}
    for name, svc in list(project.services.items()):
        if svc.profiles and not active.intersection(svc.profiles) and name not in targets:
            disabled[name] = project.services.pop(name)
    for name, svc in project.services.items():
        for dep, cond in svc.depends_on.items():
            if dep in disabled and cond.required:
                raise ComposeError(f"service {name!r} depends on {dep!r}, which is disabled by its profiles "
                                   f"{disabled[dep].profiles}; activate one with --profile",
                                   file, ("services", name, "depends_on", dep))
    return disabled


def resolve_environment(project: m.Project, env: Mapping[str, str], origin: Mapping[str, str]) -> None:
    """Read ``env_file:`` entries and fill bare ``environment`` keys from the environment."""
    for name, svc in project.services.items():
        values: dict[str, str | None] = {}
        for i, ef in enumerate(svc.env_file):
            p = Path(ef.path)
            if not p.is_file():
                if ef.required:
                    raise ComposeError(f"env file {ef.path} not found", origin.get(name),
                                       ("services", name, "env_file", i))
                continue
            values.update(parse_env_file(p, env))
        values.update(svc.environment)
        resolved: dict[str, str | None] = {}
        for k, v in values.items():
            if v is None:
                if k in env:
                    resolved[k] = env[k]
                else:
                    resolved[k] = None  # passed bare: unset in the container
            else:
                resolved[k] = v
        svc.environment = resolved
        svc.env_file = []


def add_defaults(project: m.Project) -> None:
    """The implicit ``default`` network and the engine-side names of networks and volumes."""
    uses_default = False
    for svc in project.services.values():
        if not svc.networks and not svc.network_mode:
            svc.networks = {"default": None}
        if "default" in svc.networks:
            uses_default = True
    if uses_default and "default" not in project.networks:
        project.networks["default"] = m.Network()
    for key, net in project.networks.items():
        if net.name is None:
            net.name = key if net.external else f"{project.name}_{key}"
    for key, vol in project.volumes.items():
        if vol.name is None:
            vol.name = key if vol.external else f"{project.name}_{key}"
    for section in (project.configs, project.secrets):
        for key, obj in section.items():
            if obj.name is None:
                obj.name = key if obj.external else f"{project.name}_{key}"


def check(project: m.Project, origin: Mapping[str, str], default_file: str) -> None:
    """Cross-reference checks; every problem found is reported, located."""
    errors: list[ComposeError] = []

    def err(msg: str, svc: str | None, *path: Any) -> None:
        errors.append(ComposeError(msg, origin.get(svc or "", default_file), path))

    published: dict[tuple[str, int], tuple[str, str, str]] = {}
    for name, svc in project.services.items():
        if not svc.image and not svc.build:
            err("a service needs an image or a build section", name, "services", name)
        for dep in svc.depends_on:
            if dep == name:
                err(f"service {name!r} depends on itself", name, "services", name, "depends_on", dep)
            elif dep not in project.services:
                err(f"depends on undefined service {dep!r}", name, "services", name, "depends_on", dep)
        if svc.network_mode and svc.network_mode.startswith(("service:", "container:")):
            kind, _, ref = svc.network_mode.partition(":")
            if kind == "service" and ref not in project.services:
                err(f"network_mode refers to undefined service {ref!r}", name, "services", name, "network_mode")
        for net in svc.networks:
            if net not in project.networks:
                err(f"network {net!r} is not declared in the top-level networks section", name,
                    "services", name, "networks", net)
        for i, vol in enumerate(svc.volumes):
            if vol.type == "volume" and vol.source and vol.source not in project.volumes:
                err(f"named volume {vol.source!r} is not declared in the top-level volumes section", name,
                    "services", name, "volumes", i)
        for section, refs, top in (("secrets", svc.secrets, project.secrets),
                                   ("configs", svc.configs, project.configs)):
            for i, ref in enumerate(refs):
                if ref.source not in top:
                    err(f"{section[:-1]} {ref.source!r} is not declared in the top-level {section} section",
                        name, "services", name, section, i)
        replicas = replicas_of(svc)
        if svc.container_name and replicas > 1:
            err(f"container_name {svc.container_name!r} cannot be used with {replicas} replicas", name,
                "services", name, "container_name")
        for i, port in enumerate(svc.ports):
            if not port.published or "-" in port.published:
                continue
            if replicas > 1:
                err(f"host port {port.published} cannot be published by {replicas} replicas", name,
                    "services", name, "ports", i)
            ip = port.host_ip or "0.0.0.0"
            key_any = (port.protocol, int(port.published))
            where = f"services.{name}.ports[{i}]"
            for (proto, num), (other_ip, other_where, _) in published.items():
                if (proto, num) != key_any:
                    continue
                if other_ip == ip or "0.0.0.0" in (ip, other_ip) or "::" in (ip, other_ip):
                    err(f"host port {ip}:{num}/{proto} is already published by {other_where}", name,
                        "services", name, "ports", i)
            published.setdefault(key_any, (ip, where, name))
    for key, net in project.networks.items():
        if net.external and (net.driver or net.ipam or net.driver_opts):
            err("an external network cannot set driver, driver_opts or ipam", None, "networks", key)
    for key, vol in project.volumes.items():
        if vol.external and (vol.driver or vol.driver_opts):
            err("an external volume cannot set driver or driver_opts", None, "volumes", key)
    for section, objs in (("configs", project.configs), ("secrets", project.secrets)):
        for key, obj in objs.items():
            if obj.file and not Path(obj.file).exists():
                err(f"file {obj.file} not found", None, section, key, "file")
    cycle = find_cycle(project)
    if cycle:
        err("dependency cycle: " + " -> ".join(cycle), cycle[0], "services", cycle[0], "depends_on")
    if errors:
        raise errors[0] if len(errors) == 1 else ComposeValidationError(errors)


def dependencies(svc: m.Service) -> list[str]:
    deps = list(svc.depends_on)
    if svc.network_mode and svc.network_mode.startswith("service:"):
        deps.append(svc.network_mode.partition(":")[2])
    for vf in svc.volumes_from:
        if not vf.startswith("container:"):
            deps.append(vf.split(":")[0])
    return deps


def find_cycle(project: m.Project) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for dep in dependencies(project.services[name]):
            if dep not in project.services:
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(project.services):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def order(project: m.Project, names: Iterable[str] | None = None, with_deps: bool = True) -> list[str]:
    """Services in dependency order (dependencies first), limited to ``names`` (+ their deps)."""
    wanted = set(project.services if names is None else names)
    if with_deps:
        todo = list(wanted)
        while todo:
            for dep in dependencies(project.services[todo.pop()]):
                if dep in project.services and dep not in wanted:
                    wanted.add(dep)
                    todo.append(dep)
    out: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for dep in sorted(dependencies(project.services[name])):
            if dep in project.services and dep in wanted:
                visit(dep)
        out.append(name)

    for name in sorted(wanted):
        visit(name)
    return out


def replicas_of(svc: m.Service, override: int | None = None) -> int:
    if override is not None:
        return override
    if svc.scale is not None:
        return svc.scale
    if svc.deploy and svc.deploy.replicas is not None:
        return svc.deploy.replicas
    return 1


#: Keys that do not shape the container and so must not trigger a recreate.
_HASH_EXCLUDE = {"build", "pull_policy", "scale", "profiles", "extends", "attach", "develop"}


def config_hash(svc: m.Service) -> str:
    """sha256 of the service's normalised config (stable across key order and short/long syntax)."""
    data = dump(svc, exclude=_HASH_EXCLUDE, exclude_defaults=True)
    deploy = data.get("deploy")
    if isinstance(deploy, dict):
        deploy.pop("replicas", None)
        if not deploy:
            data.pop("deploy")
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def to_yaml_dict(project: m.Project) -> dict[str, Any]:
    """The normalised model as plain data, in the order compose prints it."""
    data = dump(project, exclude_unset=True, exclude={"include", "version"})
    services = data.get("services") or {}
    for name, svc in project.services.items():  # defaults added after validation are 'unset'
        out = services.setdefault(name, {})
        out["networks"] = {k: (dump(v, exclude_unset=True) if v else None)
                           for k, v in svc.networks.items()} if svc.networks else out.get("networks")
        if out["networks"] is None:
            out.pop("networks")
        out["environment"] = dict(svc.environment)
        if not out["environment"]:
            out.pop("environment")
        out.pop("env_file", None)
        if svc.depends_on:
            out["depends_on"] = {k: {"condition": v.condition, "required": v.required,
                                     **({"restart": True} if v.restart else {})}
                                 for k, v in svc.depends_on.items()}
    result: dict[str, Any] = {"name": project.name, "services": dict(sorted(services.items()))}
    for section in ("networks", "volumes", "configs", "secrets"):
        objs = getattr(project, section)
        if objs:
            result[section] = {k: {**dump(v, exclude_unset=True), "name": v.name}
                               for k, v in sorted(objs.items())}
    return result
