"""The build engine: dispatch a parsed Dockerfile stage by stage, step by step, like dockerd's
classic builder.

Every instruction after FROM makes an image (the classic builder's intermediate images):

- metadata steps (ENV, LABEL, CMD, ...) install a new config over the parent's layers through
  :meth:`ImageService.install` (no container, no new layer; history marks ``empty_layer``);
- RUN creates a real container through the container service (the image's filesystem only: no
  build context is mounted), streams its output, waits, and commits the container's layer with
  the build state's config (not the RUN command) through :meth:`ImageService.commit`;
- COPY/ADD (and WORKDIR when it must create the directory) prepare a read-write layer on the
  parent (:meth:`ImageService.prepare_rootfs`), write into it, and commit it.

Before doing a step, its cache key (:func:`dockyard_builder.cache.step_key`) is looked up: a hit
reuses the image (``---> Using cache``). The final image gets a build record
(:attr:`dockyard.model.Image.build_record`) shaped like SLSA provenance's ``buildDefinition``
and ``runDetails`` so that provenance can sign it later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard import platforms
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.model import ContainerConfig, Healthcheck, HostConfig, Image, now_iso
from dockyard.platforms import Platform
from dockyard.reference import InvalidReference, familiar, parse_normalized
from dockyard_builder import __version__
from dockyard_builder.cache import BuildCache, step_key
from dockyard_builder.context import BuildContext, Source, file_digests, select_in, tree_digest
from dockyard_builder.copier import Owner, copy_sources, lookup_user, parse_chmod, resolve_dest
from dockyard_builder.instructions import DEFAULT_SHELL, ConfigInstructions
from dockyard_builder.parser import (
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
    parse,
    parse_instruction,
)
from dockyard_builder.record import BuildRecorder, digest_obj
from dockyard_builder.shell import Lexer
from dockyard_builder.sweep import layer_key

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Puller = Callable[[str, Emit], Awaitable[None]]  # (reference, emit) -> pulled into the store

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Build args usable without an ARG line; left out of history and cache keys (dockerd's rule).
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
PLATFORM_ARGS = ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
                 "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT")


class StepFailed(DockyardError):
    """A RUN step exited non-zero; ``code`` becomes the stream's ``errorDetail.code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    quiet: bool = False
    rm: bool = True
    force_rm: bool = False
    pull: bool = False
    platform: str = ""
    network_mode: str = "default"
    extra_hosts: list[str] = field(default_factory=list)  # host:ip, for RUN steps' /etc/hosts
    cache_from: list[str] = field(default_factory=list)  # images whose history may serve as cache


@dataclass
class StageState:
    stage: Stage
    image_id: str  # "" for scratch before the first step
    config: dict[str, Any]
    args: dict[str, str | None] = field(default_factory=dict)  # declared ARGs in scope
    cmd_set: bool = False
    author: str = ""
    base_ref: str = ""
    platform: Platform | None = None  # the stage's (FROM --platform, else the build's target)


async def _discard(msg: dict[str, Any]) -> None:
    return None


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def env_map(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def parse_platform(value: str) -> Platform:
    """A build's target platform (``linux/arm64``, ``arm64``, ``linux/arm/v7``), normalized as
    containerd does; a list (``linux/amd64,linux/arm64``) is the API's to split (one build each)."""
    if "," in value:
        raise InvalidArgument(f"platform {value!r}: one build builds one platform (the API builds a list "
                              "into one index)")
    return platforms.normalize(platforms.parse(value.strip()))


def platform_args(prefix: str, p: Platform) -> dict[str, str]:
    """BuildKit's automatic platform args: ``<prefix>PLATFORM`` (``linux/arm/v7``), ``OS``,
    ``ARCH``, ``VARIANT``."""
    return {f"{prefix}PLATFORM": str(p), f"{prefix}OS": p.os, f"{prefix}ARCH": p.architecture,
            f"{prefix}VARIANT": p.variant}


class Builder(ConfigInstructions):
    def __init__(self, kernel: Any, ctx: BuildContext, opts: BuildOptions, emit: Emit,
                 cache: BuildCache, puller: Puller | None = None) -> None:
        self.kernel = kernel
        self.ctx = ctx
        self.opts = opts
        self._emit = emit
        self.cache = cache
        self.puller = puller  # pulls a base image through a registry plugin (api.registry_puller)
        self.images = kernel.images
        self.arch = kernel.facts()["arch"]
        self.build_platform = platforms.host()
        #: what the image is built for: RUN steps of a foreign one run emulated (binfmt_misc)
        self.target = parse_platform(opts.platform) if opts.platform else self.build_platform
        self.dockerfile: Dockerfile = parse(ctx.dockerfile_text)
        self.lexer = Lexer(self.dockerfile.escape)
        self.used_args: set[str] = set()
        self.step = 0
        self.total = 0
        self.stage_states: dict[int, StageState] = {}
        self.recorder = BuildRecorder()
        self.context_digest = ""
        self.base_ids: set[str] = set()
        self.global_args: dict[str, str | None] = {}
        self._validate()

    # ------------------------------------------------------------------ set-up
    def _validate(self) -> None:
        for t in self.opts.tags:
            try:
                parse_normalized(t)
            except InvalidReference as exc:
                raise InvalidArgument(f"invalid reference format: {t!r}: {exc}") from exc
        if self.opts.target:
            idx = self.dockerfile.stage_index(self.opts.target)
            if idx is None:
                raise InvalidArgument(f"failed to reach build target {self.opts.target} in Dockerfile")
            self.last_stage = idx
        else:
            self.last_stage = len(self.dockerfile.stages) - 1
        stages = self.dockerfile.stages[: self.last_stage + 1]
        self.total = sum(1 + len(s.instructions) for s in stages) + (1 if self.opts.labels else 0)

    def _automatic_args(self) -> dict[str, str]:
        return {**platform_args("BUILD", self.build_platform), **platform_args("TARGET", self.target)}

    # ------------------------------------------------------------------ output
    async def out(self, text: str) -> None:
        if not self.opts.quiet:
            await self._emit({"stream": text})

    async def _step_header(self, inst: Instruction | None, text: str = "") -> None:
        self.step += 1
        await self.out(f"Step {self.step}/{self.total} : {text or (inst.original if inst else '')}")
        await self.out("\n")

    # ------------------------------------------------------------------ the build
    async def run(self) -> str:
        self._meta_args()
        final = ""
        for stage in self.dockerfile.stages[: self.last_stage + 1]:
            st = await self._from(stage)
            self.stage_states[stage.index] = st
            for inst in stage.instructions:
                await self._step_header(inst)
                await self.dispatch(st, inst)
            if stage.index == self.last_stage and self.opts.labels:
                pairs = sorted(self.opts.labels.items())
                text = "LABEL " + " ".join(f"{json.dumps(k)}='{v}'" for k, v in pairs)
                await self._step_header(None, text)
                await self._labels(st, pairs, text)
            if not st.image_id:
                await self._metadata_commit(st, "#(nop) ", "FROM scratch")
            final = st.image_id
        unused = sorted(k for k in self.opts.build_args if k not in self.used_args and k not in PROXY_ARGS)
        if unused:
            await self.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        await self._finish(final)
        return final

    def _meta_args(self) -> None:
        env: dict[str, str] = {}
        for inst in self.dockerfile.meta_args:
            for name, value in self._arg_decls(inst, env):
                self.global_args[name] = value
                if value is not None:
                    env[name] = value

    def _arg_decls(self, inst: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        from dockyard_builder.parser import split_words

        out = []
        for word in split_words(inst.rest, self.dockerfile.escape):
            name, eq, default = word.partition("=")
            if eq:
                default = self.lexer.process_word(default, env)
            if name in self.opts.build_args:
                value = self.opts.build_args[name]
                self.used_args.add(name)
                if value is None:
                    value = default if eq else None
            elif eq:
                value = default
            elif name in self.global_args:
                value = self.global_args[name]
            elif name in PLATFORM_ARGS:
                value = self._automatic_args()[name]
            else:
                value = None
            out.append((name, value))
        return out

    async def _finish(self, image_id: str) -> None:
        if image_id not in self.base_ids:
            # The record goes to the plugins (provenance attests it) and is stored before the
            # build's tags make the image usable by name; a plugin's refusal fails the build.
            img = self.images.get(image_id)
            # the whole context's digest (files COPY/ADD hashed already are not read again)
            self.context_digest = await asyncio.to_thread(tree_digest, self.ctx.root, "", self.ctx.digests)
            record = self.record(image_id)
            self.kernel.hook.dockyard_build_record(kernel=self.kernel, image=img, record=record)
            img.build_record = record
            self.images.store_put(img)
        await self._emit({"aux": {"ID": image_id}})
        if self.opts.quiet:
            await self._emit({"stream": image_id + "\n"})
        await self.out(f"Successfully built {short(image_id)}\n")
        for t in self.opts.tags:
            await self.images.tag(image_id, t)
            await self.out(f"Successfully tagged {familiar(t)}\n")
        name = familiar(self.opts.tags[0]) if self.opts.tags else image_id
        self.kernel.emit("image", "build", image_id, name=name)

    # ------------------------------------------------------------------ FROM
    async def _from(self, stage: Stage) -> StageState:
        await self._step_header(stage.from_instr)
        meta_env = {k: v for k, v in self.global_args.items() if v is not None}
        base = self.lexer.process_word(stage.base, meta_env)
        plat = self.target
        if stage.platform:  # FROM --platform=$BUILDPLATFORM: this stage's base for that platform
            plat = parse_platform(self.lexer.process_word(stage.platform, {**self._automatic_args(), **meta_env}))
        if not base:
            raise DockerfileError(stage.line, "base name (" + stage.base + ") should not be blank")
        st = StageState(stage=stage, image_id="", config={}, base_ref=base, platform=plat)
        if base.lower() == "scratch":
            st.config = {"Env": [DEFAULT_PATH]}
            self._dependency("scratch", "", {"role": "base", "stage": stage.name or str(stage.index)})
            return st
        prev = next((s.index for s in self.dockerfile.stages[: stage.index] if s.name and s.name == base.lower()),
                    None)
        if prev is not None:
            src = self.stage_states[prev]
            st.image_id, st.config = src.image_id, json.loads(json.dumps(src.config))
            if not st.image_id:
                await self._metadata_commit(src, "#(nop) ", "FROM scratch")
                st.image_id = src.image_id
        else:
            img = await self._base_image(base, plat)
            st.image_id = img.id
            st.config = dict(self.images.config_doc(img).get("config") or {})
            self.base_ids.add(img.id)
            self._dependency(self._uri(base), img.id, {"role": "base", "stage": stage.name or str(stage.index),
                                                       **({"manifestDigest": img.manifest_digest}
                                                          if img.manifest_digest else {})})
        await self.out(f" ---> {short(st.image_id)}\n")
        self._record_step(stage.from_instr, st, cached=True)
        triggers = list(st.config.get("OnBuild") or [])
        if triggers:
            st.config["OnBuild"] = None
            await self.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for text in triggers:
                inst = parse_instruction(text, stage.line, self.dockerfile.escape)
                if inst.keyword in ("ONBUILD", "FROM", "MAINTAINER"):
                    raise InvalidArgument(f"{inst.keyword} isn't allowed as an ONBUILD trigger")
                await self.dispatch(st, inst)
        return st

    async def _base_image(self, ref: str, plat: Platform | None = None) -> Image:
        """``ref``'s image for ``plat`` (the target's): a tag's index member of that platform,
        else the tag's image when it runs it; else pulled for that platform."""
        want = "" if plat is None or (plat == self.build_platform and not self.opts.platform) else str(plat)
        try:
            img = self.images.resolve_platform(ref, want) if want else self.images.resolve(ref)
        except NotFound:
            img = None
        if img is not None and not self.opts.pull:
            return img
        if self.puller is None:
            if img is not None:
                await self.out(f"[Warning] pull requested for {ref}, but no registry plugin is installed: "
                               "using the local image\n")
                return img
            raise NotFound(f"pull access denied for {ref}: the image is not present locally and no registry "
                           "plugin is installed to pull it (pip install dockyard-distribution); load it with "
                           "`docker load`, or make busybox with `dockyard image bootstrap busybox`")
        await self.puller(ref, self._emit if not self.opts.quiet else _discard, platform=want)
        try:
            return self.images.resolve_platform(ref, want) if want else self.images.resolve(ref)
        except NotFound:
            raise NotFound(f"{ref}: the pull finished but the image is not in the store") from None

    @staticmethod
    def _uri(ref: str) -> str:
        try:
            return "docker-image://" + str(parse_normalized(ref))
        except InvalidReference:
            return "docker-image://" + ref

    # ------------------------------------------------------------------ dispatch
    def expand_env(self, st: StageState) -> dict[str, str]:
        env = {k: v for k, v in st.args.items() if v is not None}
        env.update(env_map(list(st.config.get("Env") or [])))
        return env

    def word(self, st: StageState, text: str) -> str:
        return self.lexer.process_word(text, self.expand_env(st))

    async def dispatch(self, st: StageState, inst: Instruction) -> None:
        kw = inst.keyword
        try:
            handler = getattr(self, "_i_" + kw.lower())
            await handler(st, inst)
        except DockerfileError:
            raise
        except StepFailed:
            raise
        except InvalidArgument as exc:
            if "line" in str(exc):
                raise
            raise InvalidArgument(f"{kw} (line {inst.line}): {exc}") from exc

    async def _i_arg(self, st: StageState, inst: Instruction) -> None:
        for name, value in self._arg_decls(inst, self.expand_env(st)):
            st.args[name] = value
        await self._config_step(st, inst, "ARG " + inst.rest, {})

    async def _i_workdir(self, st: StageState, inst: Instruction) -> None:
        value = self.word(st, inst.rest)
        current = st.config.get("WorkingDir") or "/"
        path = posixpath.normpath(posixpath.join(current, value))
        text = f"WORKDIR {path}"
        key = self._key(st, text)
        created_by = " ".join([*(st.config.get("Shell") or DEFAULT_SHELL), f"#(nop) {text}"])
        config = {**st.config, "WorkingDir": path}
        if await self._try_cache(st, inst, key, created_by, config):
            return

        async def work(rootfs: Path) -> bool:
            from dockyard.tarsafe import secure_join

            host = secure_join(rootfs, path)
            if host.is_dir():
                return False
            await asyncio.to_thread(_mkdir_all, rootfs, path)
            return True

        await self._layer_step(st, inst, key, created_by, config, work)

    # ------------------------------------------------------------------ RUN
    def _run_args(self, st: StageState) -> tuple[list[str], list[str]]:
        """(env of build args for the container, the ones shown in history and cache keys)."""
        cfg_keys = set(env_map(list(st.config.get("Env") or [])))
        env, shown = [], []
        for name in sorted(st.args):
            value = st.args[name]
            if value is None or name in cfg_keys:
                continue
            env.append(f"{name}={value}")
            if name not in PROXY_ARGS:
                shown.append(f"{name}={value}")
        for name in sorted(PROXY_ARGS):
            if name in self.opts.build_args and name not in st.args and self.opts.build_args[name] is not None:
                env.append(f"{name}={self.opts.build_args[name]}")
                self.used_args.add(name)
        return env, shown

    async def _i_run(self, st: StageState, inst: Instruction) -> None:
        cmd = self._command(st, inst)
        if not cmd:
            raise InvalidArgument("RUN requires at least one argument")
        args_env, shown = self._run_args(st)
        created_by = " ".join(cmd)
        if shown:
            created_by = f"|{len(shown)} {' '.join(shown)} {created_by}"
        key = self._key(st, "RUN " + json.dumps(cmd), *shown)
        if await self._try_cache(st, inst, key, created_by, st.config):
            return
        if not st.image_id:
            raise InvalidArgument("RUN needs a base image with a shell or command (FROM scratch has none)")
        containers = self.kernel.containers
        from dockyard.services.containers import ContainerCreate, LogOptions

        cfg = ContainerConfig(image=st.image_id, env=[*list(st.config.get("Env") or []), *args_env],
                              working_dir=st.config.get("WorkingDir") or "", user=st.config.get("User") or "",
                              labels={}, attach_stdout=True, attach_stderr=True,
                              healthcheck=Healthcheck(test=["NONE"]))  # no probes while a step runs
        req = ContainerCreate(config=cfg, host_config=HostConfig(network_mode=self.opts.network_mode or "default",
                                                                extra_hosts=list(self.opts.extra_hosts)),
                              entrypoint=[], cmd=cmd)
        c = await containers.create(req)
        await self.out(f" ---> Running in {c.id[:12]}\n")
        settled = False  # the container was removed, or is deliberately kept
        try:
            await containers.start_container(c.id)
            async for _stream, data in containers.logs(c.id, LogOptions(follow=True)):
                await self.out(data.decode(errors="replace"))
            code = await containers.wait(c.id)
            if code != 0:
                if self.opts.force_rm:
                    await self._remove_container(c.id)
                settled = True  # without --force-rm dockerd leaves the failed container for inspection
                raise StepFailed(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
            image = await self.images.commit(
                layer_key=c.id, base_image=st.image_id, config=self._clean_config(st.config),
                created_by=created_by, container_id=c.id, author=st.author,
                container_config={**self._clean_config(st.config), "Cmd": cmd})
            if self.opts.rm or self.opts.force_rm:
                await self._remove_container(c.id)
            settled = True  # with rm=false the container stays, as with docker build --rm=false
        except BaseException:
            if not settled:  # cancelled (client gone) or a failure before the commit
                with contextlib.suppress(Exception):
                    await containers.remove(c.id, force=True, volumes=True)
            raise
        await self._commit_done(st, inst, key, image.id)
        await self.out(f" ---> {short(image.id)}\n")

    async def _remove_container(self, cid: str) -> None:
        await self.out(f"Removing intermediate container {cid[:12]}\n")
        await self.kernel.containers.remove(cid, force=True, volumes=True)

    # ------------------------------------------------------------------ COPY / ADD
    async def _i_copy(self, st: StageState, inst: Instruction) -> None:
        await self._copy(st, inst, add=False)

    async def _i_add(self, st: StageState, inst: Instruction) -> None:
        await self._copy(st, inst, add=True)

    async def _copy(self, st: StageState, inst: Instruction, add: bool) -> None:
        env = self.expand_env(st)
        raw = inst.exec_form if inst.exec_form is not None else inst.rest.split()
        words = [self.lexer.process_word(w, env) for w in raw]
        srcs, dest = words[:-1], words[-1]
        if "checksum" in inst.flags or "keep-git-dir" in inst.flags:
            raise InvalidArgument("ADD --checksum and --keep-git-dir need remote sources, which this offline "
                                  "builder does not fetch")
        chown = self.lexer.process_word(inst.flags["chown"], env) if "chown" in inst.flags else ""
        chmod = parse_chmod(self.lexer.process_word(inst.flags["chmod"], env)) if "chmod" in inst.flags else None
        from_ref = self.lexer.process_word(inst.flags["from"], env) if "from" in inst.flags else ""
        for s in srcs:
            if s.startswith(("http://", "https://")):
                raise InvalidArgument(f"cannot fetch {s}: ADD of remote URLs is not supported, the builder works "
                                      "offline (download the file into the build context and COPY it)")
        wildcard = any(any(c in s for c in "*?[") for s in srcs)
        kw = "ADD" if add else "COPY"
        flags = (f" --from={from_ref}" if from_ref else "") + (f" --chown={chown}" if chown else "") + \
            (f" --chmod={chmod:o}" if chmod is not None else "")
        text = f"{kw}{flags} {json.dumps(srcs)} {dest}"
        dest_abs = resolve_dest(dest, st.config.get("WorkingDir") or "/")
        inputs: list[str] = []
        copy_deps: list[dict[str, Any]] = []
        if from_ref:
            src_image = await self._from_image(from_ref)
            inputs.append(f"from={src_image.id}")
            copy_deps.append({"uri": self._from_uri(from_ref), "digest": digest_obj(src_image.id),
                              "annotations": {"role": "copy-from", "step": str(self.step), "destination": dest_abs,
                                              "sources": json.dumps(srcs)}})
            selected: list[Source] = []
        else:
            src_image = None
            selected = []
            for s in srcs:
                sel = await asyncio.to_thread(self.ctx.select, s)
                selected.extend(sel)
            memo = self.ctx.digests
            for src in selected:
                d = await asyncio.to_thread(tree_digest, self.ctx.root, src.rel, memo)
                inputs.append(f"{src.rel}={d}")
            files: dict[str, str] = {}
            for src in selected:
                files.update(await asyncio.to_thread(file_digests, self.ctx.root, src.rel, memo))
            for rel, d in sorted(files.items()):
                copy_deps.append({"uri": f"context:{rel}", "digest": digest_obj(d),
                                  "annotations": {"role": "context", "step": str(self.step), "destination": dest_abs}})
        key = self._key(st, text, *inputs)
        summary = hashlib.sha256("\n".join(inputs).encode()).hexdigest()
        kind = "multi" if len(selected) > 1 or len(srcs) > 1 else ("dir" if selected and selected[0].is_dir else "file")
        created_by = f"/bin/sh -c #(nop) {kw}{flags} {kind}:{summary} in {dest} "
        hit = await self._try_cache(st, inst, key, created_by, st.config)
        for dep in copy_deps:
            self._dependency(dep["uri"], "sha256:" + dep["digest"]["sha256"], dep["annotations"])
        if hit:
            return

        async def work(rootfs: Path) -> bool:
            owner = await asyncio.to_thread(lookup_user, rootfs, chown) if chown else None
            if src_image is not None:
                key_tmp = layer_key("src")
                src_root = Path(await self.images.prepare_rootfs(key_tmp, src_image.id))
                try:
                    sel: list[Source] = []
                    for s in srcs:
                        sel.extend(await asyncio.to_thread(select_in, src_root, s, f"image {from_ref}"))
                    await asyncio.to_thread(copy_sources, rootfs, sel, dest, st.config.get("WorkingDir") or "/",
                                            owner=owner, chmod=chmod, unpack_archives=False,
                                            wildcard=wildcard, keyword=kw)
                finally:
                    await self.images.remove_rootfs(key_tmp)
            else:
                await asyncio.to_thread(copy_sources, rootfs, selected, dest, st.config.get("WorkingDir") or "/",
                                        owner=owner, chmod=chmod, unpack_archives=add, wildcard=wildcard,
                                        keyword=kw)
            return True

        await self._layer_step(st, inst, key, created_by, dict(st.config), work)

    async def _from_image(self, ref: str) -> Image:
        idx = self.dockerfile.stage_index(ref)
        if idx is not None and idx in self.stage_states:
            st = self.stage_states[idx]
            if not st.image_id:
                await self._metadata_commit(st, "#(nop) ", "FROM scratch")
            return self.images.get(st.image_id)
        if idx is not None:
            raise InvalidArgument(f"COPY --from={ref}: stage {ref} is not built before this one")
        try:
            img = self.images.resolve(ref)
        except NotFound:
            raise NotFound(f"COPY --from={ref}: no such stage, and the image is not present locally "
                           "(pull it first)") from None
        return img

    def _from_uri(self, ref: str) -> str:
        idx = self.dockerfile.stage_index(ref)
        if idx is not None:
            return f"stage:{self.dockerfile.stages[idx].name or idx}"
        return self._uri(ref)

    # ------------------------------------------------------------------ commits and cache
    def _key(self, st: StageState, text: str, *inputs: str) -> str:
        scratch = "scratch" if st.platform in (None, self.build_platform) else f"scratch:{st.platform}"
        return step_key(st.image_id or scratch, text, inputs)

    def _exists(self, image_id: str) -> bool:
        try:
            self.images.get(image_id)
            return True
        except NotFound:
            return False

    async def _try_cache(self, st: StageState, inst: Instruction | None, key: str, created_by: str = "",
                         config: dict[str, Any] | None = None) -> bool:
        """A step served from the build cache, else from the history of a ``cache_from`` image
        (given the step's ``created_by`` and the config it leaves)."""
        if self.opts.no_cache:
            return False
        hit = await asyncio.to_thread(self.cache.lookup, key)
        if hit is not None and not self._exists(hit):  # the image was removed since: a miss
            await asyncio.to_thread(self.cache.forget, key)
            hit = None
        if hit is None and self.opts.cache_from and created_by and config is not None:
            hit = await self._from_cache_sources(st, created_by, config)
            if hit is not None:
                await asyncio.to_thread(self.cache.put, key, hit)
        if hit is None:
            return False
        img = self.images.get(hit)
        st.image_id = hit
        st.config = dict(self.images.config_doc(img).get("config") or {})
        await self.out(" ---> Using cache\n")
        await self.out(f" ---> {short(hit)}\n")
        self._record_step(inst, st, cached=True)
        return True

    async def _from_cache_sources(self, st: StageState, created_by: str, config: dict[str, Any]) -> str | None:
        """dockerd's ``--cache-from`` (``image/cache``): an image given whose history starts with
        the current image's and continues with this step (same ``created_by``, layers in
        order) serves it. The step's image is the source itself when the step is its last,
        else one made from its first layers and history with the step's config, as dockerd's
        ``restoreCachedImage`` does, so the next step can match too."""
        from dockyard.services.images import Layer, Plan, dumps

        parent = self.images.get(st.image_id) if st.image_id else None
        pdoc = self.images.config_doc(parent) if parent else {}
        phist, players = list(pdoc.get("history") or []), list(parent.layers if parent else [])
        for ref in self.opts.cache_from:
            try:
                target = self.images.resolve(ref)
            except NotFound:
                continue  # dockerd only warns about a cache source it cannot find
            tdoc = self.images.config_doc(target)
            thist, tlayers = list(tdoc.get("history") or []), list(target.layers)
            n = len(phist)
            if len(thist) <= n or thist[:n] != phist or tlayers[:len(players)] != players:
                continue
            step = thist[n]
            if step.get("created_by") != created_by:
                continue
            count = len(players) + (0 if step.get("empty_layer") else 1)
            if count > len(tlayers):
                continue
            if n == len(thist) - 1 and count == len(tlayers):
                return target.id
            doc = {**{k: v for k, v in tdoc.items() if k in ("architecture", "os", "variant", "author")},
                   "created": step.get("created") or tdoc.get("created"), "config": self._clean_config(config),
                   "docker_version": f"dockyard-builder-{__version__}",
                   "rootfs": {"type": "layers", "diff_ids": tlayers[:count]}, "history": thist[:n + 1]}
            layers = [Layer(diff_id=d, size=0, path=self.images.content.path(d)) for d in tlayers[:count]]
            (made,) = await self.images.install([Plan(config_raw=dumps(doc), layers=layers,
                                                      parent=parent.id if parent else "")], "build")
            return made.image.id
        return None

    async def _commit_done(self, st: StageState, inst: Instruction | None, key: str, image_id: str) -> None:
        st.image_id = image_id
        await asyncio.to_thread(self.cache.put, key, image_id)
        self._record_step(inst, st, cached=False)

    @staticmethod
    def _clean_config(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if v not in (None, "", [], {})}

    async def _config_step(self, st: StageState, inst: Instruction | None, text: str, changes: dict[str, Any]) -> None:
        key = self._key(st, text)
        created_by = " ".join([*(st.config.get("Shell") or DEFAULT_SHELL), "#(nop)  " + text])
        if await self._try_cache(st, inst, key, created_by, {**st.config, **changes}):
            return
        st.config = {**st.config, **changes}
        image_id = await self._metadata_commit(st, "#(nop) ", text)
        await self._commit_done(st, inst, key, image_id)
        await self.out(f" ---> {short(image_id)}\n")

    async def _metadata_commit(self, st: StageState, prefix: str, text: str) -> str:
        """A new image on ``st``'s image with ``st.config`` and no new layer."""
        from dockyard.services.images import Layer, Plan, dumps

        base = self.images.get(st.image_id) if st.image_id else None
        base_doc = self.images.config_doc(base) if base else {}
        now = now_iso()
        shell = list(st.config.get("Shell") or DEFAULT_SHELL)
        created_by = " ".join([*shell, prefix + " " + text]) if prefix else text
        history = list(base_doc.get("history") or [])
        history.append({"created": now, "created_by": created_by, "empty_layer": True})
        config = self._clean_config(st.config)
        doc = {
            "architecture": base_doc.get("architecture") or (st.platform or self.target).architecture,
            "os": base_doc.get("os") or (st.platform or self.target).os,
            "created": now, "config": config,
            "container_config": {**config, "Cmd": [*shell, prefix + " " + text]},
            "docker_version": f"dockyard-builder-{__version__}",
            "rootfs": {"type": "layers", "diff_ids": list(base.layers if base else [])},
            "history": history,
        }
        if st.author or base_doc.get("author"):
            doc["author"] = st.author or base_doc.get("author")
        if base_doc.get("variant") or (not base and (st.platform or self.target).variant):
            doc["variant"] = base_doc.get("variant") or (st.platform or self.target).variant
        layers = [Layer(diff_id=d, size=0, path=self.images.content.path(d)) for d in (base.layers if base else [])]
        plan = Plan(config_raw=dumps(doc), layers=layers, parent=base.id if base else "")
        (inst,) = await self.images.install([plan], "build")
        st.image_id = inst.image.id
        return inst.image.id

    async def _layer_step(self, st: StageState, inst: Instruction | None, key: str, created_by: str,
                          config: dict[str, Any], work: Callable[[Path], Awaitable[bool]]) -> None:
        """Prepare a read-write layer on ``st``'s image, let ``work`` change it, commit it."""
        key_rw = layer_key()
        if st.image_id:
            rootfs = Path(await self.images.prepare_rootfs(key_rw, st.image_id))
        else:
            drv = await self.images.driver()
            await drv.prepare(key_rw, None)
            rootfs = Path(await drv.mount(key_rw))
        try:
            changed = await work(rootfs)
            if changed:
                scratch = {} if st.image_id else {"platform": str(st.platform or self.target)}
                image = await self.images.commit(layer_key=key_rw, base_image=st.image_id,
                                                 config=self._clean_config(config), created_by=created_by,
                                                 author=st.author, **scratch)
                image_id = image.id
            else:
                st.config = config
                image_id = await self._metadata_commit(st, "", created_by)
        finally:
            await self.images.remove_rootfs(key_rw)
        st.config = config
        await self._commit_done(st, inst, key, image_id)
        await self.out(f" ---> {short(image_id)}\n")

    # ------------------------------------------------------------------ the build record
    def _dependency(self, uri: str, digest: str, annotations: dict[str, str]) -> None:
        self.recorder.dependency(uri, digest, annotations)

    def _record_step(self, inst: Instruction | None, st: StageState, cached: bool) -> None:
        self.recorder.step(self.step, st.stage.name or str(st.stage.index), inst.line if inst else 0,
                           inst.original if inst else "LABEL (--label)", st.image_id, cached)

    def record(self, image_id: str) -> dict[str, Any]:
        o = self.opts
        return self.recorder.record(
            image_id=image_id, dockerfile_name=self.ctx.dockerfile_name, dockerfile_text=self.ctx.dockerfile_text,
            build_args=o.build_args, labels=o.labels, target=o.target, tags=o.tags,
            platform=str(self.target), no_cache=o.no_cache,
            network_mode=o.network_mode or "default", dockerignore=self.ctx.ignore is not None,
            context_digest=self.context_digest)


def _mkdir_all(rootfs: Path, path: str) -> None:
    from dockyard_builder.copier import _mkdirs

    _mkdirs(rootfs, path, Owner(), False)


def parse_query_json(value: str, what: str) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid {what}: expected a JSON object")
    return data

