"""The instructions that only change the image config (ENV, LABEL, EXPOSE, VOLUME, USER,
STOPSIGNAL, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD, MAINTAINER): a mixin of
:class:`dockyard_builder.builder.Builder`, each handler computing the config change and handing it
to ``_config_step`` (cache lookup, then a new image without a new layer)."""

from __future__ import annotations

import json
import re
import signal as _signal
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument
from dockyard_builder.parser import Instruction, parse_kv

if TYPE_CHECKING:
    from dockyard_builder.builder import StageState

DEFAULT_SHELL = ["/bin/sh", "-c"]
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str, what: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    if text in ("0", ""):
        return 0
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise InvalidArgument(f"invalid {what} {text!r}: expected a duration such as 30s or 1m30s")
    return int(total)


def set_env(env: list[str], key: str, value: str) -> list[str]:
    out = list(env)
    for i, item in enumerate(out):
        if item.partition("=")[0] == key:
            out[i] = f"{key}={value}"
            return out
    out.append(f"{key}={value}")
    return out


class ConfigInstructions:
    """Handlers ``_i_<keyword>``; the host class provides ``lexer``, ``dockerfile``,
    ``expand_env``, ``word`` and ``_config_step``."""

    lexer: Any
    dockerfile: Any

    def expand_env(self, st: StageState) -> dict[str, str]:  # pragma: no cover - the host's
        raise NotImplementedError

    def word(self, st: StageState, text: str) -> str:  # pragma: no cover - the host's
        raise NotImplementedError

    async def _config_step(self, st: StageState, inst: Instruction | None, text: str,
                           changes: dict[str, Any]) -> None:  # pragma: no cover - the host's
        raise NotImplementedError

    async def _i_env(self, st: StageState, inst: Instruction) -> None:
        env = self.expand_env(st)
        pairs = [(self.lexer.process_word(k, env), self.lexer.process_word(v, env))
                 for k, v in parse_kv(inst.rest, "ENV", inst.line, self.dockerfile.escape)]
        cfg_env = list(st.config.get("Env") or [])
        for k, v in pairs:
            cfg_env = set_env(cfg_env, k, v)
        text = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        await self._config_step(st, inst, text, {"Env": cfg_env})

    async def _i_label(self, st: StageState, inst: Instruction) -> None:
        env = self.expand_env(st)
        pairs = [(self.lexer.process_word(k, env), self.lexer.process_word(v, env))
                 for k, v in parse_kv(inst.rest, "LABEL", inst.line, self.dockerfile.escape)]
        await self._labels(st, pairs, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), inst)

    async def _labels(self, st: StageState, pairs: list[tuple[str, str]], text: str,
                      inst: Instruction | None = None) -> None:
        labels = dict(st.config.get("Labels") or {})
        labels.update(pairs)
        await self._config_step(st, inst, text, {"Labels": labels})

    async def _i_expose(self, st: StageState, inst: Instruction) -> None:
        env = self.expand_env(st)
        ports = dict(st.config.get("ExposedPorts") or {})
        added = []
        for raw in inst.rest.split():
            for word in self.lexer.process_words(raw, env):
                port, _, proto = word.partition("/")
                proto = (proto or "tcp").lower()
                if proto not in ("tcp", "udp", "sctp"):
                    raise InvalidArgument(f"invalid proto: {proto}")
                lo, _, hi = port.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()):
                    raise InvalidArgument(f"invalid containerPort: {port}")
                for p in range(int(lo), int(hi or lo) + 1):
                    ports[f"{p}/{proto}"] = {}
                    added.append(f"{p}/{proto}")
        await self._config_step(st, inst, "EXPOSE " + " ".join(added), {"ExposedPorts": ports})

    async def _i_volume(self, st: StageState, inst: Instruction) -> None:
        env = self.expand_env(st)
        items = inst.exec_form if inst.exec_form is not None else inst.rest.split()
        vols = dict(st.config.get("Volumes") or {})
        added = []
        for item in items:
            v = self.lexer.process_word(item, env).strip()
            if not v:
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[v] = {}
            added.append(v)
        await self._config_step(st, inst, "VOLUME " + json.dumps(added), {"Volumes": vols})

    async def _i_user(self, st: StageState, inst: Instruction) -> None:
        user = self.word(st, inst.rest)
        await self._config_step(st, inst, f"USER {user}", {"User": user})

    async def _i_stopsignal(self, st: StageState, inst: Instruction) -> None:
        sig = self.word(st, inst.rest)
        name = sig.upper()
        if not (sig.isdigit() or name in _signal.Signals.__members__ or f"SIG{name}" in _signal.Signals.__members__
                or re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name)):
            raise InvalidArgument(f"Invalid signal: {sig}")
        await self._config_step(st, inst, f"STOPSIGNAL {sig}", {"StopSignal": sig})

    def _command(self, st: StageState, inst: Instruction) -> list[str]:
        if inst.exec_form is not None:
            return list(inst.exec_form)
        if not inst.rest:
            return []
        shell = list(st.config.get("Shell") or DEFAULT_SHELL)
        return [*shell, inst.rest]

    async def _i_cmd(self, st: StageState, inst: Instruction) -> None:
        cmd = self._command(st, inst)
        st.cmd_set = True
        await self._config_step(st, inst, "CMD " + json.dumps(cmd), {"Cmd": cmd or None})

    async def _i_entrypoint(self, st: StageState, inst: Instruction) -> None:
        ep = self._command(st, inst)
        changes: dict[str, Any] = {"Entrypoint": ep or None}
        if not st.cmd_set:
            changes["Cmd"] = None
        await self._config_step(st, inst, "ENTRYPOINT " + json.dumps(ep), changes)

    async def _i_shell(self, st: StageState, inst: Instruction) -> None:
        assert inst.exec_form is not None
        await self._config_step(st, inst, "SHELL " + json.dumps(inst.exec_form), {"Shell": list(inst.exec_form)})

    async def _i_healthcheck(self, st: StageState, inst: Instruction) -> None:
        word, _, rest = inst.rest.partition(" ")
        if word.upper() == "NONE":
            await self._config_step(st, inst, "HEALTHCHECK NONE", {"Healthcheck": {"Test": ["NONE"]}})
            return
        rest = rest.strip()
        try:
            value = json.loads(rest) if rest.startswith("[") else None
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            test = ["CMD", *value]
        else:
            test = ["CMD-SHELL", rest]
        hc: dict[str, Any] = {"Test": test}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                          ("start-interval", "StartInterval")):
            if flag in inst.flags:
                ns = parse_duration(inst.flags[flag], f"--{flag}")
                if ns and ns < 1_000_000:
                    raise InvalidArgument(f"--{flag} cannot be less than 1ms")
                hc[key] = ns
        if "retries" in inst.flags:
            try:
                hc["Retries"] = int(inst.flags["retries"])
            except ValueError:
                raise InvalidArgument(f"invalid --retries {inst.flags['retries']!r}") from None
            if hc["Retries"] < 0:
                raise InvalidArgument("--retries cannot be negative")
        await self._config_step(st, inst, "HEALTHCHECK " + json.dumps(hc, sort_keys=True), {"Healthcheck": hc})

    async def _i_onbuild(self, st: StageState, inst: Instruction) -> None:
        assert inst.inner is not None
        trigger = inst.rest.strip()
        onbuild = list(st.config.get("OnBuild") or []) + [trigger]
        await self._config_step(st, inst, f"ONBUILD {trigger}", {"OnBuild": onbuild})

    async def _i_maintainer(self, st: StageState, inst: Instruction) -> None:
        st.author = self.word(st, inst.rest)
        await self._config_step(st, inst, f"MAINTAINER {st.author}", {})

