"""Compose operations over the Engine API: converge (up), down, and the per-container commands.

Modules only some commands need (tarfile, the build context, datetime...) are imported where
they are used: every command pays for what is imported here.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard import errors as e
from dockyard_compose import engine as E
from dockyard_compose import graph, spec
from dockyard_compose import model as m
from dockyard_compose.errors import ComposeError
from dockyard_compose.loader import Loaded
from dockyard_compose.project import config_hash, dependencies, order, replicas_of
from dockyard_compose.ui import LogPrinter, Printer


class ComposeRuntimeError(e.DockyardError):
    """A step of a compose operation failed on the engine (with the service it concerned)."""


@dataclass
class UpOptions:
    services: list[str] = field(default_factory=list)
    detach: bool = False
    build: bool = False
    no_build: bool = False
    pull: str | None = None  # "always" | "missing" | "never" | None (policy of each service)
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    no_start: bool = False
    remove_orphans: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    wait: bool = False
    wait_timeout: float = 120.0
    timeout: int | None = None
    abort_on_exit: bool = False
    exit_code_from: str | None = None


def split_ref(ref: str) -> tuple[str, str]:
    """``registry:5000/a/b:tag`` -> (``registry:5000/a/b``, ``tag``); digests stay in the name."""
    if "@" in ref:
        return ref, ""
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, "latest"


def short(cid: str) -> str:
    return cid[:12]


def name_of(c: dict[str, Any]) -> str:
    if "Names" in c:
        return (c.get("Names") or ["?"])[0].lstrip("/")
    return (c.get("Name") or "?").lstrip("/")


def label(c: dict[str, Any], key: str) -> str:
    return E.have_label(c, key)


class Compose:
    def __init__(self, engine: E.Engine, ctx: Loaded | None, project_name: str,
                 printer: Printer | None = None) -> None:
        self.engine = engine
        self.ctx = ctx
        self.name = project_name
        self.out = printer or Printer()
        self._images: dict[str, str] = {}
        self._health_warned = False
        self._verified: set[str] = set()  # containers whose condition was met during this command
        self.parallel = graph.parallel_limit()  # concurrent service operations at most

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def model(self) -> m.Project:
        if self.ctx is None:
            raise ComposeError("this command needs a compose file (none found; use -f FILE)")
        return self.ctx.model

    def service(self, name: str) -> m.Service:
        if name not in self.model.services:
            raise ComposeError(f"no such service: {name}")
        return self.model.services[name]

    def containers(self, services: list[str] | None = None, all: bool = True,
                   oneoff: bool | None = False) -> list[dict[str, Any]]:
        found = self.engine.containers(self.name, oneoff=oneoff, all=all)
        if services:
            found = [c for c in found if label(c, E.L_SERVICE) in services]
        return found

    def known_services(self) -> list[str]:
        if self.ctx is not None:
            return list(self.model.services)
        return sorted({label(c, E.L_SERVICE) for c in self.containers()})

    def _check_services(self, services: list[str]) -> None:
        for s in services:
            if self.ctx is not None and s not in self.model.services:
                disabled = self.ctx.disabled
                extra = " (disabled by its profiles; use --profile)" if s in disabled else ""
                raise ComposeError(f"no such service: {s}{extra}")

    # -- pre-flight: checks against the engine, before anything is created -----------------------------
    def check_external(self, services: list[str]) -> None:
        model = self.model
        nets = {n for s in services for n in model.services[s].networks}
        vols = {v.source for s in services for v in model.services[s].volumes if v.type == "volume" and v.source}
        problems: list[ComposeError] = []
        for key in sorted(nets):
            net = model.networks[key]
            if net.external and self.engine.network(net.name or key) is None:
                problems.append(ComposeError(f"external network {net.name!r} not found on the engine; create it "
                                             "first or remove 'external: true'", None, ("networks", key)))
        for key in sorted(vols):
            vol = model.volumes[key]
            if vol.external and self.engine.volume(vol.name or key) is None:
                problems.append(ComposeError(f"external volume {vol.name!r} not found on the engine; create it "
                                             "first or remove 'external: true'", None, ("volumes", key)))
        for s in services:
            for section, refs in (("secrets", model.services[s].secrets), ("configs", model.services[s].configs)):
                top = getattr(model, section)
                for ref in refs:
                    obj = top[ref.source]
                    if obj.external:
                        problems.append(ComposeError(
                            f"external {section[:-1]} {ref.source!r} needs swarm; not supported", None,
                            ("services", s, section)))
        if problems:
            from dockyard_compose.errors import ComposeValidationError

            for p in problems:
                p.file = str(self.ctx.config_files[0]) if self.ctx else None
                p.args = (p._render(),)
            raise problems[0] if len(problems) == 1 else ComposeValidationError(problems)

    # -- networks and volumes -----------------------------------------------------------------------------
    def ensure_networks(self, services: list[str]) -> None:
        wanted = sorted({n for s in services for n in self.model.services[s].networks})
        for key in wanted:
            net = self.model.networks[key]
            name = net.name or key
            if net.external:
                continue
            have = self.engine.network(name)
            if have is not None:
                labels = have.get("Labels") or {}
                if net.driver and have.get("Driver") and have["Driver"] != net.driver:
                    raise ComposeRuntimeError(
                        f"network {name} exists with driver {have['Driver']!r} but networks.{key} declares "
                        f"{net.driver!r}; remove it first (dockyard compose down) to recreate it")
                if labels.get(E.L_PROJECT) not in (None, self.name) or labels.get(E.L_NETWORK) not in (None, key):
                    self.out.warn(f"network {name} exists but was not created for this project; using it")
                continue
            body: dict[str, Any] = {
                "Name": name, "CheckDuplicate": True, "Attachable": True,
                "Labels": {**net.labels, E.L_PROJECT: self.name, E.L_NETWORK: key, E.L_VERSION: _version()},
                "Internal": net.internal, "Options": dict(net.driver_opts),
            }
            if net.driver:
                body["Driver"] = net.driver
            if net.enable_ipv6:
                body["EnableIPv6"] = True
            if net.ipam:
                body["IPAM"] = {"Driver": net.ipam.driver or "default", "Options": dict(net.ipam.options),
                                "Config": [{k: v for k, v in {"Subnet": c.subnet, "IPRange": c.ip_range,
                                                               "Gateway": c.gateway,
                                                               "AuxiliaryAddresses": c.aux_addresses or None}.items()
                                            if v} for c in net.ipam.config]}
            try:
                self.engine.post("/networks/create", body)
            except e.DockyardError as exc:
                if self.engine.network(name) is not None:  # created meanwhile by a concurrent run
                    continue
                raise ComposeRuntimeError(f"network {name}: {exc}") from exc
            self.out.event("Network", name, "Created")

    def ensure_volumes(self, services: list[str]) -> None:
        wanted = sorted({v.source for s in services for v in self.model.services[s].volumes
                         if v.type == "volume" and v.source})
        for key in wanted:
            vol = self.model.volumes[key]
            name = vol.name or key
            if vol.external or self.engine.volume(name) is not None:
                continue
            body: dict[str, Any] = {"Name": name, "Labels": {**vol.labels, E.L_PROJECT: self.name,
                                                              E.L_VOLUME: key, E.L_VERSION: _version()}}
            if vol.driver:
                body["Driver"] = vol.driver
            if vol.driver_opts:
                body["DriverOpts"] = dict(vol.driver_opts)
            try:
                self.engine.post("/volumes/create", body)
            except e.DockyardError as exc:
                if self.engine.volume(name) is not None:
                    continue
                raise ComposeRuntimeError(f"volume {name}: {exc}") from exc
            self.out.event("Volume", name, "Created")

    # -- images -------------------------------------------------------------------------------------------
    def image_id(self, name: str) -> str | None:
        if name not in self._images:
            img = self.engine.image(spec.image_ref(self.name, name, self.model.services[name]))
            if img is None:
                return None
            self._images[name] = img["Id"]
        return self._images[name]

    def ensure_images(self, services: list[str], build: bool = False, no_build: bool = False,
                      pull: str | None = None) -> None:
        seen: dict[str, dict[str, Any] | None] = {}  # ref -> inspect, once per ref (ten services, one image)
        pulled: set[str] = set()
        for s in services:
            svc = self.model.services[s]
            ref = spec.image_ref(self.name, s, svc)
            policy = pull or svc.pull_policy or "missing"
            if svc.build and (build or policy == "build"):
                self.build([s])
                seen.pop(ref, None)
                continue
            if ref not in seen:
                seen[ref] = self.engine.image(ref)
            present = seen[ref] is not None
            if present and policy != "always":
                self._images[s] = seen[ref]["Id"]  # type: ignore[index]
                continue
            seen.pop(ref, None)  # pulled or built below: inspect again
            if policy == "always" and not svc.build:
                if ref not in pulled:
                    self.pull_one(s, ref)
                    pulled.add(ref)
            elif not present:
                if svc.build and not no_build:
                    self.build([s])
                elif policy == "never":
                    raise ComposeRuntimeError(f"service {s}: image {ref} is not present and pull_policy is never")
                elif svc.build:
                    raise ComposeRuntimeError(f"service {s}: image {ref} is not built (--no-build was given)")
                else:
                    self.pull_one(s, ref)
            self._images.pop(s, None)
            if self.image_id(s) is None:
                raise ComposeRuntimeError(f"service {s}: image {ref} is still missing")

    def pull_one(self, service: str, ref: str, ignore_failures: bool = False) -> bool:
        name, tag = split_ref(ref)
        self.out.event("Image", ref, "Pulling")
        params = {"fromImage": name, "tag": tag} if tag else {"fromImage": name}
        try:
            for msg in self.engine.stream_json("POST", "/images/create", params,
                                               headers={"X-Registry-Auth": "e30="}):
                if msg.get("error"):
                    raise ComposeRuntimeError(f"pull {ref}: {msg['error']}")
        except (e.DockyardError, ComposeRuntimeError) as exc:
            if ignore_failures:
                self.out.event("Image", ref, "Error", str(exc))
                return False
            raise ComposeRuntimeError(f"service {service}: pull {ref}: {exc}") from exc
        self.out.event("Image", ref, "Pulled")
        return True

    def build(self, services: list[str], no_cache: bool = False, pull: bool = False,
              quiet: bool = False) -> None:
        for s in services:
            svc = self.model.services[s]
            if not svc.build:
                continue
            b = svc.build
            ref = spec.image_ref(self.name, s, svc)
            from dockyard_compose.context import build_context

            tar, dockerfile = build_context(Path(b.context), b.dockerfile, b.dockerfile_inline)
            params: dict[str, Any] = {
                "t": [ref, *b.tags], "dockerfile": dockerfile, "rm": 1, "forcerm": 1,
                "pull": 1 if (pull or b.pull) else 0, "nocache": 1 if (no_cache or b.no_cache) else 0,
                "q": 0,
                "labels": json.dumps({**b.labels, E.L_PROJECT: self.name, E.L_SERVICE: s,
                                      E.L_VERSION: _version()}),
            }
            args = {k: v for k, v in b.args.items() if v is not None}
            if args:
                params["buildargs"] = json.dumps(args)
            if b.target:
                params["target"] = b.target
            if b.network:
                params["networkmode"] = b.network
            if b.extra_hosts:
                params["extrahosts"] = ",".join(f"{h}:{ip}" for h, ip in b.extra_hosts.items())
            if b.shm_size:
                params["shmsize"] = b.shm_size
            self.out.event("Service", s, "Building", ref)
            headers = {"Content-Type": "application/x-tar",
                       "X-Registry-Config": "e30="}  # base64 of {}
            try:
                resp = self.engine.client.request("POST", "/build", params, body=tar, headers=headers,
                                                  timeout=None)
            except e.NotFound as exc:
                raise ComposeRuntimeError(
                    f"service {s}: the engine at {self.engine.host} has no build endpoint (POST /build "
                    f"answered 404: {exc}); build {ref} elsewhere and load it, or use an engine with a "
                    "builder") from exc
            except e.DockyardError as exc:
                raise ComposeRuntimeError(f"service {s}: build {ref}: {exc}") from exc
            error = None
            image_id = None
            try:
                for raw in resp:
                    raw = raw.strip()
                    if not raw:
                        continue
                    try:
                        msg = json.loads(raw)
                    except ValueError:
                        continue
                    if msg.get("error"):
                        error = msg["error"]
                    elif msg.get("aux", {}).get("ID"):
                        image_id = msg["aux"]["ID"]
                    elif msg.get("stream") and not quiet:
                        text = msg["stream"].rstrip("\n")
                        if text.strip():
                            self.out.info(f"   {s}  | {text}")
            finally:
                resp.close()
            if error:
                raise ComposeRuntimeError(f"service {s}: build failed: {error.strip()}")
            self._images.pop(s, None)
            self.out.event("Image", ref, "Built", short(image_id.split(":")[-1]) if image_id else "")

    # -- containers ---------------------------------------------------------------------------------------
    def _labels(self, name: str, number: int, oneoff: bool = False) -> dict[str, str]:
        svc = self.model.services[name]
        labels = spec.compose_labels(self.ctx, name, number, oneoff, config_hash(svc))
        img = self.image_id(name)
        if img:
            labels[E.L_IMAGE] = img
        return labels

    def create(self, name: str, number: int, oneoff: bool = False, overrides: dict[str, Any] | None = None,
               cname: str | None = None) -> str:
        svc = self.model.services[name]
        image = spec.image_ref(self.name, name, svc)
        net_ref = None
        if svc.network_mode and svc.network_mode.startswith("service:"):
            target = svc.network_mode.partition(":")[2]
            running = self.containers([target], all=False)
            if not running:
                raise ComposeRuntimeError(f"service {name}: network_mode service:{target} has no running container")
            net_ref = running[0]["Id"]
        body = spec.create_body(self.ctx, name, svc, number, image, self._labels(name, number, oneoff), net_ref)
        if overrides:
            for k, v in overrides.items():
                if k == "HostConfig":
                    body["HostConfig"].update(v)
                else:
                    body[k] = v
        cname = cname or spec.container_name(self.name, name, svc, number)
        try:
            res = self.engine.post("/containers/create", body, name=cname)
        except e.DockyardError as exc:
            raise ComposeRuntimeError(f"service {name}: create {cname}: {exc}") from exc
        cid = res["Id"]
        nets = spec.sorted_networks(svc) if not svc.network_mode else []
        for key in nets[1:]:
            net = self.model.networks[key]
            try:
                self.engine.post(f"/networks/{net.name}/connect",
                                 {"Container": cid, "EndpointConfig": spec.endpoint_config(name, svc, key, cname)})
            except e.DockyardError as exc:
                raise ComposeRuntimeError(f"service {name}: connect {cname} to {net.name}: {exc}") from exc
        self._inject_files(name, svc, cid)
        self.out.event("Container", cname, "Created")
        return cid

    def _inject_files(self, name: str, svc: m.Service, cid: str) -> None:
        """Configs/secrets given by ``content:``/``environment:`` are copied in with the archive API."""
        for _kind, refs, top, base in (("secrets", svc.secrets, self.model.secrets, "/run/secrets/"),
                                      ("configs", svc.configs, self.model.configs, "/")):
            for ref in refs:
                obj = top[ref.source]
                if obj.file or obj.external:
                    continue
                data = (obj.content if obj.content is not None
                        else self.ctx.environment.get(obj.environment or "", "")).encode()
                target = ref.target or ref.source
                if not target.startswith("/"):
                    target = base + target
                parent, _, fname = target.rpartition("/")
                import io
                import tarfile

                buf = io.BytesIO()
                with tarfile.open(fileobj=buf, mode="w") as tf:
                    parts = [p for p in parent.split("/") if p]
                    for i in range(len(parts)):
                        d = tarfile.TarInfo("/".join(parts[:i + 1]))
                        d.type, d.mode = tarfile.DIRTYPE, 0o755
                        tf.addfile(d)
                    info = tarfile.TarInfo("/".join([*parts, fname]))
                    info.size, info.mode = len(data), ref.mode if ref.mode is not None else 0o444
                    tf.addfile(info, io.BytesIO(data))
                self.engine.client.request("PUT", f"/containers/{cid}/archive", {"path": "/"},
                                           body=buf.getvalue(),
                                           headers={"Content-Type": "application/x-tar"}).close()

    def start(self, cid: str, cname: str) -> None:
        try:
            self.engine.post(f"/containers/{cid}/start")
        except e.NotModified:
            pass
        except e.DockyardError as exc:
            raise ComposeRuntimeError(f"start {cname}: {exc}") from exc
        self.out.event("Container", cname, "Started")

    def stop(self, c: dict[str, Any], timeout: int | None = None) -> None:
        svc = self.model.services.get(label(c, E.L_SERVICE)) if self.ctx else None
        t = timeout if timeout is not None else spec.stop_timeout(svc)
        self.out.event("Container", name_of(c), "Stopping")
        try:
            self.engine.post(f"/containers/{c['Id']}/stop", timeout=t + 30, t=t)
        except (e.NotModified, e.NotFound):
            pass
        except e.DockyardError as exc:
            raise ComposeRuntimeError(f"stop {name_of(c)}: {exc}") from exc
        self.out.event("Container", name_of(c), "Stopped")

    def remove(self, c: dict[str, Any], volumes: bool = False, force: bool = False) -> None:
        try:
            self.engine.delete(f"/containers/{c['Id']}", v=1 if volumes else 0, force=1 if force else 0)
        except e.NotFound:
            pass
        except e.DockyardError as exc:
            raise ComposeRuntimeError(f"remove {name_of(c)}: {exc}") from exc
        self.out.event("Container", name_of(c), "Removed")

    # -- waiting ------------------------------------------------------------------------------------------
    def wait_condition(self, dep: str, condition: str, timeout: float = 300.0) -> None:
        containers = self.containers([dep])
        if not containers:
            if condition == "service_started":
                return
            raise ComposeRuntimeError(f"dependency {dep} has no container")
        for c in containers:
            if condition == "service_healthy":
                self.wait_healthy(c, timeout)
            elif condition == "service_completed_successfully":
                self.wait_exit_zero(c, timeout)
            else:
                continue
            self._verified.add(c["Id"])

    def wait_healthy(self, c: dict[str, Any], timeout: float, require_check: bool = True) -> None:
        cname = name_of(c)
        deadline = time.monotonic() + timeout
        self.model.services.get(label(c, E.L_SERVICE)) if self.ctx else None
        started = time.monotonic()
        self.out.event("Container", cname, "Waiting")
        while True:
            info = self.engine.inspect(c["Id"])
            state = info.get("State") or {}
            check = (info.get("Config") or {}).get("Healthcheck") or {}
            has_check = bool(check.get("Test")) and check.get("Test") != ["NONE"]
            if not state.get("Running"):
                if state.get("Status") in ("created",) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise ComposeRuntimeError(f"container {cname} is not running "
                                          f"({state.get('Status')}, exit code {state.get('ExitCode')})")
            if not has_check:
                if require_check:
                    raise ComposeRuntimeError(f"container {cname} has no healthcheck configured")
                return
            health = state.get("Health") or {}
            status = health.get("Status")
            if status == "healthy":
                self.out.event("Container", cname, "Healthy")
                return
            if status == "unhealthy":
                self.out.event("Container", cname, "Unhealthy")
                raise ComposeRuntimeError(f"container {cname} is unhealthy")
            interval = (check.get("Interval") or 30_000_000_000) / 1e9
            grace = (check.get("StartPeriod") or 0) / 1e9 + interval + 2.0
            if not health.get("Log") and _running_for(state, started) > grace:
                # The engine records no probe at all (podman without systemd timers never runs
                # healthchecks): run the service's own test through exec, and say so.
                if not self._health_warned:
                    self.out.warn(f"the engine ({self.engine.engine_name}) has not run any healthcheck of "
                                  f"{cname} after {grace:.0f}s; running the healthcheck test through exec "
                                  "to evaluate depends_on/--wait")
                    self._health_warned = True
                code = self.exec_probe(c["Id"], check)
                if code == 0:
                    self.out.event("Container", cname, "Healthy", "(probed through exec)")
                    return
            if time.monotonic() > deadline:
                raise ComposeRuntimeError(f"container {cname} did not become healthy within {timeout:.0f}s")
            time.sleep(min(max(interval / 4, 0.2), 1.0))

    def exec_probe(self, cid: str, check: dict[str, Any]) -> int:
        test = check.get("Test") or []
        cmd = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
        ex = self.engine.post(f"/containers/{cid}/exec", {"Cmd": cmd, "AttachStdout": True,
                                                          "AttachStderr": True})
        conn = self.engine.hijack(f"/exec/{ex['Id']}/start", body={"Detach": False, "Tty": False})
        conn.close_write()
        try:
            conn.sock.settimeout((check.get("Timeout") or 30_000_000_000) / 1e9)
            for _ in E.demux(conn.read):
                pass
        except OSError:
            return -1
        finally:
            conn.close()
        for _ in range(50):
            info = self.engine.get(f"/exec/{ex['Id']}/json")
            if not info.get("Running"):
                return int(info.get("ExitCode") if info.get("ExitCode") is not None else -1)
            time.sleep(0.05)
        return -1

    def wait_exit_zero(self, c: dict[str, Any], timeout: float) -> None:
        cname = name_of(c)
        self.out.event("Container", cname, "Waiting")
        deadline = time.monotonic() + timeout
        while True:
            state = self.engine.inspect(c["Id"]).get("State") or {}
            if state.get("Status") in ("exited", "dead", "stopped") and not state.get("Running"):
                code = state.get("ExitCode")
                if code != 0:
                    raise ComposeRuntimeError(f"container {cname} exited with code {code}")
                self.out.event("Container", cname, "Exited")
                return
            if time.monotonic() > deadline:
                raise ComposeRuntimeError(f"container {cname} did not complete within {timeout:.0f}s")
            time.sleep(0.2)

    # -- up -----------------------------------------------------------------------------------------------
    def up(self, opts: UpOptions) -> int:
        self._check_services(opts.services)
        names = order(self.model, opts.services or None, with_deps=not opts.no_deps)
        for s in names:
            for key in spec.ignored_keys(self.model.services[s]):
                self.out.warn(f"service {s}: {key} is not supported by dockyard compose and is ignored")
        self.check_external(names)
        self.ensure_images(names, build=opts.build, no_build=opts.no_build, pull=opts.pull)
        self.ensure_networks(names)
        self.ensure_volumes(names)
        self._orphans(opts.remove_orphans, opts.timeout)
        # each service is converged as soon as the services it depends on are (concurrently)
        self._walk(names, self._service_deps(names), lambda s: self._up_one(s, names, opts), "started")
        if opts.wait and not opts.no_start:
            self.wait_all([s for s in names], opts.wait_timeout)
        if opts.detach or opts.no_start:
            return 0
        if opts.exit_code_from and opts.exit_code_from not in names:
            raise ComposeError(f"--exit-code-from: service {opts.exit_code_from!r} is not part of this up")
        return self.attach_logs([s for s in names if self.model.services[s].attach],
                                abort_on_exit=opts.abort_on_exit or bool(opts.exit_code_from),
                                timeout=opts.timeout, exit_code_from=opts.exit_code_from)

    # -- concurrency --------------------------------------------------------------------------------------
    def _service_deps(self, services: list[str],
                      containers: list[dict[str, Any]] | None = None) -> dict[str, set[str]]:
        """What each service depends on: from the model, else from its containers' depends_on label."""
        out: dict[str, set[str]] = {s: set() for s in services}
        for s in services:
            if self.ctx is not None and s in self.model.services:
                out[s] = set(dependencies(self.model.services[s]))
        for c in containers or []:
            s = label(c, E.L_SERVICE)
            if s in out and (self.ctx is None or s not in self.model.services):
                out[s] |= {item.split(":")[0] for item in label(c, E.L_DEPENDS).split(",") if item}
        return out

    def _walk(self, nodes: list[str], prerequisites: dict[str, set[str]], fn: Any, what: str) -> None:
        """Run ``fn`` over ``nodes`` concurrently in dependency order (:func:`graph.walk`); on failure
        name what was left undone and raise the error (all of them, when several failed)."""
        res = graph.walk(nodes, prerequisites, fn, self.parallel)
        if not res.failed:
            return
        if res.skipped:
            self.out.warn(f"not {what} because of the error{'s' if len(res.failed) > 1 else ''} below: "
                          f"{', '.join(res.skipped)}")
        errors = list(res.failed.values())
        if len(errors) == 1 or not all(isinstance(x, e.DockyardError) for x in errors):
            raise errors[0]
        raise ComposeRuntimeError("\n".join(str(x) for x in errors)) from errors[0]

    def _up_one(self, s: str, names: list[str], opts: UpOptions) -> None:
        svc = self.model.services[s]
        if not opts.no_start:
            for dep, cond in svc.depends_on.items():
                if dep in names or not opts.no_deps:
                    try:
                        self.wait_condition(dep, cond.condition)
                    except ComposeRuntimeError as exc:
                        if cond.required:
                            raise ComposeRuntimeError(f"service {s} cannot start: {exc}") from exc
                        self.out.warn(f"service {s}: optional dependency {dep}: {exc}")
        self.converge(s, opts)

    def _orphans(self, remove: bool, timeout: int | None) -> None:
        orphans = [c for c in self.containers() if label(c, E.L_SERVICE) not in self.model.services
                   and label(c, E.L_SERVICE) not in self.ctx.disabled]
        if not orphans:
            return
        if not remove:
            self.out.warn(f"found orphan containers ({', '.join(name_of(c) for c in orphans)}) for this project; "
                          "use --remove-orphans to remove them")
            return
        for c in orphans:
            if c.get("State") == "running":
                self.stop(c, timeout)
            self.remove(c, force=True)

    def converge(self, name: str, opts: UpOptions) -> None:
        svc = self.model.services[name]
        desired = replicas_of(svc, opts.scale.get(name))
        existing = self.containers([name])
        want_hash = config_hash(svc)
        image = self.image_id(name)
        by_number: dict[int, dict[str, Any]] = {}
        for c in existing:
            try:
                n = int(label(c, E.L_NUMBER))
            except ValueError:
                n = 0
            if n in by_number or n < 1:
                self.stop(c, opts.timeout)
                self.remove(c, force=True)
                continue
            by_number[n] = c
        for n in sorted(by_number):
            if n > desired:
                c = by_number.pop(n)
                if c.get("State") == "running":
                    self.stop(c, opts.timeout)
                self.remove(c, force=True)
        for n in range(1, desired + 1):
            c = by_number.get(n)
            if c is None:
                cid = self.create(name, n)
                if not opts.no_start:
                    self.start(cid, spec.container_name(self.name, name, svc, n))
                continue
            cname = name_of(c)
            changed = label(c, E.L_HASH) != want_hash
            img_changed = bool(image) and c.get("ImageID", image) != image
            if opts.force_recreate or (not opts.no_recreate and (changed or img_changed)):
                why = "forced" if opts.force_recreate else ("config changed" if changed else "image changed")
                self.out.event("Container", cname, "Recreate", why)
                if c.get("State") == "running":
                    self.stop(c, opts.timeout)
                self.remove(c, force=True)
                cid = self.create(name, n)
                if not opts.no_start:
                    self.start(cid, cname)
                self.out.event("Container", cname, "Recreated")
            elif c.get("State") != "running" and not opts.no_start:
                if self._completed_ok(c, name):
                    self.out.event("Container", cname, "Exited", "(completed)")
                    continue
                self.start(c["Id"], cname)
            else:
                self.out.event("Container", cname, "Running")

    def _completed_ok(self, c: dict[str, Any], name: str) -> bool:
        """A one-shot dependency that already completed successfully is not restarted by ``up``."""
        if c.get("State") != "exited":
            return False
        needed = any(d.get(name) and d[name].condition == "service_completed_successfully"
                     for d in (s.depends_on for s in self.model.services.values()))
        if not needed:
            return False
        return (self.engine.inspect(c["Id"]).get("State") or {}).get("ExitCode") == 0

    def wait_all(self, services: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for c in self.containers(services):
            if c["Id"] in self._verified:
                continue
            left = max(1.0, deadline - time.monotonic())
            name = label(c, E.L_SERVICE)
            completes = any(d.get(name) and d[name].condition == "service_completed_successfully"
                            for d in (s.depends_on for s in self.model.services.values()))
            if completes:
                self.wait_exit_zero(c, left)
                continue
            self.wait_healthy(c, left, require_check=False)
            info = self.engine.inspect(c["Id"])
            if (info.get("State") or {}).get("Running"):
                hc = (info.get("Config") or {}).get("Healthcheck") or {}
                if not hc.get("Test") or hc.get("Test") == ["NONE"]:
                    self.out.event("Container", name_of(c), "Running")

    # -- attached logs ------------------------------------------------------------------------------------
    def attach_logs(self, services: list[str], abort_on_exit: bool = False, timeout: int | None = None,
                    exit_code_from: str | None = None) -> int:
        containers = self.containers(services)
        short_names = [self._short_name(c) for c in containers]
        printer = LogPrinter(short_names)
        done = threading.Event()
        exits: dict[str, int] = {}
        lock = threading.Lock()
        remaining = [len(containers)]

        def follow(c: dict[str, Any], sname: str) -> None:
            try:
                tty = bool((self.engine.inspect(c["Id"]).get("Config") or {}).get("Tty"))
                for stream, data in self.engine.logs(c["Id"], tty, follow=True):
                    printer.feed(sname, stream, data)
                printer.flush(sname)
                state = (self.engine.inspect(c["Id"]).get("State") or {})
                code = int(state.get("ExitCode") or 0)
                exits[sname] = code
                printer.line(sname, f"exited with code {code}")
            except e.DockyardError:
                pass
            finally:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] <= 0 or abort_on_exit:
                        done.set()

        if not containers:
            return 0
        try:  # Ctrl-C may come at any point from here on, even while the followers start
            self.out.info(f"Attaching to {', '.join(name_of(c) for c in containers)}")
            for c, sname in zip(containers, short_names, strict=True):
                threading.Thread(target=follow, args=(c, sname), daemon=True).start()
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            self.out.info("Gracefully stopping... (press Ctrl+C again to force)")
            self._stop_all(containers, timeout)
            return 130
        if abort_on_exit:
            self.out.info("Aborting on container exit...")
            self._stop_all(containers, timeout)
        if exit_code_from:
            for c in containers:
                if label(c, E.L_SERVICE) == exit_code_from:
                    return int((self.engine.inspect(c["Id"]).get("State") or {}).get("ExitCode") or 0)
        return max(exits.values(), default=0) if abort_on_exit else 0

    def _stop_all(self, containers: list[dict[str, Any]], timeout: int | None) -> None:
        try:
            self.stop_ordered(containers, timeout)
        except KeyboardInterrupt:
            for c in containers:
                try:
                    self.engine.post(f"/containers/{c['Id']}/kill")
                except e.DockyardError:
                    pass

    def _short_name(self, c: dict[str, Any]) -> str:
        svc, num = label(c, E.L_SERVICE), label(c, E.L_NUMBER)
        if svc and num and name_of(c) == f"{self.name}-{svc}-{num}":
            return f"{svc}-{num}"
        return name_of(c)

    # -- stop/down ----------------------------------------------------------------------------------------
    def _by_service(self, containers: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for c in containers:
            groups.setdefault(label(c, E.L_SERVICE), []).append(c)
        return groups

    def _each(self, containers: list[dict[str, Any]], fn: Any, what: str) -> None:
        """``fn`` over the containers of one service (its replicas), concurrently."""
        if len(containers) == 1:
            fn(containers[0])
            return
        by_id = {c["Id"]: c for c in containers}
        self._walk(list(by_id), {}, lambda cid: fn(by_id[cid]), what)

    def for_containers(self, containers: list[dict[str, Any]], fn: Any, what: str,
                       dependents_first: bool) -> None:
        """``fn`` over containers, concurrently, a service's containers only after those of the
        services it depends on (``dependents_first``: before them)."""
        groups = self._by_service(containers)
        deps = self._service_deps(list(groups), containers)
        self._walk(list(groups), graph.reverse(deps) if dependents_first else deps,
                   lambda s: self._each(groups[s], fn, what), what)

    def stop_ordered(self, containers: list[dict[str, Any]], timeout: int | None = None) -> None:
        """Stop what runs, dependents before their dependencies."""
        live = [c for c in containers if c.get("State") in _LIVE]
        self.for_containers(live, lambda c: self.stop(c, timeout), "stopped", dependents_first=True)

    def start_ordered(self, containers: list[dict[str, Any]]) -> None:
        """Start what does not run, dependencies before their dependents."""
        def start(c: dict[str, Any]) -> None:
            if c.get("State") != "running":
                self.start(c["Id"], name_of(c))

        self.for_containers(containers, start, "started", dependents_first=False)

    def down(self, volumes: bool = False, rmi: str | None = None, remove_orphans: bool = False,
             timeout: int | None = None) -> None:
        known = set(self.known_services())
        containers = [c for c in self.engine.containers(self.name, oneoff=None, all=True)
                      if remove_orphans or self.ctx is None or label(c, E.L_SERVICE) in known]

        def stop_and_remove(c: dict[str, Any]) -> None:
            if c.get("State") in _LIVE:
                self.stop(c, timeout)
            self.remove(c, volumes=volumes, force=True)

        # a service's containers go once every service depending on it has gone
        self.for_containers(containers, stop_and_remove, "removed", dependents_first=True)
        leftovers = [c for c in self.engine.containers(self.name, oneoff=None, all=True)
                     if c["Id"] not in {x["Id"] for x in containers}]
        if leftovers:
            self.out.warn(f"orphan containers left ({', '.join(name_of(c) for c in leftovers)}); "
                          "use --remove-orphans")
        self._delete_each("Network", "/networks", self._project_networks())
        if volumes:
            self._delete_each("Volume", "/volumes", self._project_volumes())
        if rmi and self.ctx is not None:
            self._delete_each("Image", "/images", [
                spec.image_ref(self.name, s, svc) for s, svc in self.model.services.items()
                if not (rmi == "local" and svc.image)])

    def _delete_each(self, kind: str, collection: str, names: list[str]) -> None:
        """DELETE ``collection/name`` for each name: gone already is fine, other errors are shown
        and the rest still go."""
        for name in names:
            try:
                self.engine.delete(f"{collection}/{name}")
                self.out.event(kind, name, "Removed")
            except e.NotFound:
                pass
            except e.DockyardError as exc:
                self.out.event(kind, name, "Error", str(exc))

    def _project_networks(self) -> list[str]:
        names: set[str] = set()
        if self.ctx is not None:
            names |= {n.name for n in self.model.networks.values() if not n.external and n.name}
        for net in self.engine.get("/networks", filters=json.dumps({"label": [f"{E.L_PROJECT}={self.name}"]})) or []:
            if (net.get("Labels") or {}).get(E.L_PROJECT) == self.name:
                names.add(net["Name"])
        return sorted(n for n in names if self.engine.network(n) is not None
                      and ((self.engine.network(n) or {}).get("Labels") or {}).get(E.L_PROJECT) == self.name)

    def _project_volumes(self) -> list[str]:
        names: set[str] = set()
        if self.ctx is not None:
            names |= {v.name for v in self.model.volumes.values() if not v.external and v.name}
        res = self.engine.get("/volumes", filters=json.dumps({"label": [f"{E.L_PROJECT}={self.name}"]})) or {}
        for vol in res.get("Volumes") or []:
            if (vol.get("Labels") or {}).get(E.L_PROJECT) == self.name:
                names.add(vol["Name"])
        return sorted(names)

    # -- run ----------------------------------------------------------------------------------------------
    def run_oneoff(self, service: str, command: list[str] | None, *, entrypoint: list[str] | None = None,
                   env: dict[str, str] | None = None, user: str | None = None, workdir: str | None = None,
                   name: str | None = None, rm: bool = False, detach: bool = False, tty: bool = False,
                   interactive: bool = False, no_deps: bool = False, service_ports: bool = False,
                   publish: list[str] | None = None, labels: dict[str, str] | None = None) -> int:
        from dockyard_compose import streams

        self._check_services([service])
        svc = self.model.services[service]
        self.check_external([service])
        if not no_deps:
            deps = [d for d in order(self.model, [service]) if d != service]
            if deps:
                self.up(UpOptions(services=deps, detach=True))
        self.ensure_images([service])
        self.ensure_networks([service])
        self.ensure_volumes([service])
        for dep, cond in svc.depends_on.items():
            if not no_deps:
                self.wait_condition(dep, cond.condition)
        number = 1 + max([int(label(c, E.L_NUMBER) or 0) for c in self.containers([service], oneoff=True)],
                         default=0)
        import secrets as pysecrets

        cname = name or f"{self.name}-{service}-run-{pysecrets.token_hex(6)}"
        overrides: dict[str, Any] = {"Tty": tty, "OpenStdin": interactive, "StdinOnce": interactive,
                                     "AttachStdin": interactive, "AttachStdout": not detach,
                                     "AttachStderr": not detach}
        if command:
            overrides["Cmd"] = command
        if entrypoint is not None:
            overrides["Entrypoint"] = entrypoint
        if user:
            overrides["User"] = user
        if workdir:
            overrides["WorkingDir"] = workdir
        host: dict[str, Any] = {"AutoRemove": bool(rm and detach)}  # attached: removed by us after wait
        if not service_ports:
            host["PortBindings"] = {}
        if publish:
            from dockyard_compose.model import parse_port

            pb: dict[str, list[dict[str, str]]] = {}
            for p in publish:
                for item in parse_port(p):
                    pb.setdefault(f"{item['target']}/{item.get('protocol', 'tcp')}", []).append(
                        {"HostIp": item.get("host_ip") or "", "HostPort": item.get("published") or ""})
            host["PortBindings"] = pb
        overrides["HostConfig"] = host
        base_env = {k: v for k, v in svc.environment.items() if v is not None}
        base_env.update(env or {})
        overrides["Env"] = [f"{k}={v}" for k, v in sorted(base_env.items())]
        all_labels = {**svc.labels, **(labels or {}), **self._labels(service, number, oneoff=True)}
        overrides["Labels"] = all_labels
        cid = self.create(service, number, oneoff=True, overrides=overrides, cname=cname)
        if detach:
            self.start(cid, cname)
            print(cname)
            return 0
        try:
            return streams.run_attached(self.engine, cid, tty=tty, interactive=interactive,
                                        start=lambda: self.engine.post(f"/containers/{cid}/start"))
        finally:
            if rm:
                try:
                    self.engine.delete(f"/containers/{cid}", force=1, v=1)
                except e.DockyardError:
                    pass


_LIVE = ("running", "paused", "restarting", None)  # states ``stop`` acts on (None: not listed)


def _running_for(state: dict[str, Any], fallback_start: float) -> float:
    """Seconds since the container started (engine clock), or since we began waiting."""
    from datetime import UTC, datetime

    text = state.get("StartedAt") or ""
    try:
        main, _, frac = text.rstrip("Z").partition(".")
        started = datetime.fromisoformat(main).replace(tzinfo=UTC)
        return max(0.0, datetime.now(UTC).timestamp() - started.timestamp())
    except ValueError:
        return time.monotonic() - fallback_start


def _version() -> str:
    from dockyard_compose import __version__

    return __version__


def dependency_names(model: m.Project, name: str) -> list[str]:
    return dependencies(model.services[name])
