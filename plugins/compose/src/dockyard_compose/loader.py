"""Load compose files: YAML, interpolation, include, extends, merge, profiles, environment.

Every file is parsed, interpolated and validated on its own first (so an error names the file
it is in), normalised to the long syntax, then the files are merged by the compose
specification's rules (mappings merged, sequences appended, ``command``/``entrypoint``/
``healthcheck.test`` replaced, ``ports``/``volumes``/``secrets``/``configs`` unique by their
key), and the merged result is validated again and checked as a whole by :mod:`.project`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dockyard_compose import model as m
from dockyard_compose import schema
from dockyard_compose.errors import ComposeError, ComposeValidationError, format_path
from dockyard_compose.interpolate import interpolate_tree, parse_env_file

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yaml", "docker-compose.override.yml")


@dataclass
class LoadOptions:
    files: list[str] = field(default_factory=list)
    project_directory: str | None = None
    project_name: str | None = None
    env_files: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    environ: Mapping[str, str] | None = None  # the process environment (os.environ by default)
    targets: list[str] = field(default_factory=list)  # services named on the command line
    cwd: str | None = None


# --- YAML with located errors, duplicate-key detection and !reset / !override ----------------------


class _Tagged:
    def __init__(self, tag: str, value: Any) -> None:
        self.tag, self.value = tag, value


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1}, column {mark.column + 1})", mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _construct_tag(loader: _Loader, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.MappingNode):
        value: Any = _construct_mapping(loader, node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
        value = yaml.safe_load(value) if value else None
    return _Tagged(node.tag, value)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("!reset", _construct_tag)
_Loader.add_constructor("!override", _construct_tag)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ComposeError("no such file", str(path)) from None
    except OSError as exc:
        raise ComposeError(f"cannot read: {exc.strerror}", str(path)) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise ComposeError(f"invalid YAML: {exc.problem or exc.context}", str(path), where) from None
    except yaml.YAMLError as exc:
        raise ComposeError(f"invalid YAML: {exc}", str(path)) from None


def _strip_tags(data: Any, loc: tuple[Any, ...], tags: dict[tuple[Any, ...], str]) -> Any:
    """Replace tagged nodes by their value, remembering ``loc -> tag``; ``!reset`` drops the key."""
    if isinstance(data, _Tagged):
        tags[loc] = data.tag
        return _strip_tags(data.value, loc, tags) if data.tag == "!override" else None
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if isinstance(v, _Tagged) and v.tag == "!reset":
                tags[(*loc, k)] = "!reset"
                continue
            out[k] = _strip_tags(v, (*loc, k), tags)
        return out
    if isinstance(data, list):
        return [_strip_tags(v, (*loc, i), tags) for i, v in enumerate(data)]
    return data


# --- validation ---------------------------------------------------------------------------------------


def validate(data: Any, file: str) -> m.Project:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ComposeError(f"the top level must be a mapping, got {schema.kind(data)}", file)
    for key in data:
        if not isinstance(key, str):
            raise ComposeError(f"keys must be strings, got {schema.kind(key)}", file)
    try:
        return schema.validate(m.Project, data)
    except schema.SchemaError as exc:
        raise ComposeValidationError([ComposeError(msg, file, loc) for loc, msg in exc.problems]) from None


def _dump(project: m.Project) -> dict[str, Any]:
    return schema.dump(project, exclude_unset=True)  # type: ignore[no-any-return]


# --- merging ------------------------------------------------------------------------------------------


def _port_key(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p.get("host_ip"), p.get("target"), p.get("published"), p.get("protocol", "tcp"))


_UNIQUE = {
    "ports": _port_key,
    "volumes": lambda v: v.get("target"),
    "secrets": lambda v: v.get("target") or v.get("source"),
    "configs": lambda v: v.get("target") or v.get("source"),
}
_REPLACE = {("command",), ("entrypoint",), ("healthcheck", "test")}


def merge_service(base: dict[str, Any], over: dict[str, Any],
                  tags: Mapping[tuple[Any, ...], str] | None = None, loc: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Merge one service's normalised mapping on top of another (the spec's rules)."""
    return _merge(base, over, (), tags or {}, loc)


def _merge(base: Any, over: Any, rel: tuple[Any, ...], tags: Mapping[tuple[Any, ...], str],
           loc: tuple[Any, ...]) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            sub = (*rel, k)
            if tags.get((*loc, k)) == "!override" or k not in out:
                out[k] = v
            else:
                out[k] = _merge(out[k], v, sub, tags, (*loc, k))
        for path, tag in tags.items():
            if tag == "!reset" and len(path) == len(loc) + 1 and path[:len(loc)] == loc:
                out.pop(path[-1], None)
        return out
    if isinstance(base, list) and isinstance(over, list):
        if rel[-1:] and rel[-1] in _UNIQUE and len(rel) == 1:
            keyf = _UNIQUE[rel[-1]]
            merged: dict[Any, Any] = {}
            for item in base + over:
                k = keyf(item) if isinstance(item, dict) else repr(item)
                merged[k] = _merge(merged[k], item, (), {}, ()) if k in merged and isinstance(item, dict) \
                    else item
            return list(merged.values())
        if rel in _REPLACE:
            return over
        return base + [x for x in over if x not in base] if rel and rel[-1] in ("dns", "dns_search", "env_file",
                                                                                 "tmpfs", "cap_add", "cap_drop",
                                                                                 "profiles", "expose") \
            else base + over
    return over


def merge_projects(base: dict[str, Any], over: dict[str, Any],
                   tags: Mapping[tuple[Any, ...], str]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if tags.get((key,)) == "!override" or key not in out:
            out[key] = value
        elif key in ("services", "networks", "volumes", "configs", "secrets") and isinstance(value, dict):
            section = dict(out[key] or {})
            for name, item in value.items():
                if tags.get((key, name)) == "!override" or name not in section:
                    section[name] = item
                else:
                    section[name] = _merge(section[name], item, (), tags, (key, name))
            for path, tag in tags.items():
                if tag == "!reset" and len(path) == 2 and path[0] == key:
                    section.pop(path[1], None)
            out[key] = section
        else:
            out[key] = value
    for path, tag in tags.items():
        if tag == "!reset" and len(path) == 1:
            out.pop(path[0], None)
    return out


# --- per-file loading -------------------------------------------------------------------------------


def _abs(path: str, base: Path) -> str:
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(doc: dict[str, Any], base: Path) -> None:
    """Make the relative paths of one file absolute, relative to that file's directory."""
    for svc in (doc.get("services") or {}).values():
        build = svc.get("build")
        if isinstance(build, dict) and "context" in build:
            if not re.match(r"^[a-z]+://", build["context"]):
                build["context"] = _abs(build["context"], base)
        elif isinstance(build, dict):
            build["context"] = str(base.resolve())
        for ef in svc.get("env_file") or []:
            ef["path"] = _abs(ef["path"], base)
        for vol in svc.get("volumes") or []:
            src = vol.get("source")
            if vol.get("type") == "bind" and src and src.startswith((".", "~")):
                vol["source"] = _abs(src, base)
        ext = svc.get("extends")
        if isinstance(ext, dict) and ext.get("file"):
            ext["file"] = _abs(ext["file"], base)
    for section in ("configs", "secrets"):
        for obj in (doc.get(section) or {}).values():
            if obj.get("file"):
                obj["file"] = _abs(obj["file"], base)


@dataclass
class _FileDoc:
    path: Path
    data: dict[str, Any]
    tags: dict[tuple[Any, ...], str]


class Loader:
    def __init__(self, env: Mapping[str, str], environ: Mapping[str, str], base: Path | None = None) -> None:
        self.env = env
        self.environ = environ
        self.base = base  # relative paths of top-level files resolve here (the project directory)
        self._cache: dict[tuple[Path, Path], _FileDoc] = {}

    def load_file(self, path: Path, stack: tuple[Path, ...] = (), top: bool = False) -> _FileDoc:
        """Load one file. Relative paths in a top-level file (``-f``) are relative to the project
        directory, as the spec's merge rules say; in an extended file, to that file's directory."""
        path = path.resolve()
        base = (self.base if top and self.base is not None else path.parent).resolve()
        if (path, base) in self._cache:
            return self._cache[(path, base)]
        if path in stack:
            chain = " -> ".join(str(p) for p in (*stack, path))
            raise ComposeError(f"include cycle: {chain}", str(stack[-1]), "include")
        raw = read_yaml(path)
        if raw is not None and not isinstance(raw, dict):
            raise ComposeError(f"the top level must be a mapping, got {schema.kind(raw)}", str(path))
        tags: dict[tuple[Any, ...], str] = {}
        raw = _strip_tags(raw or {}, (), tags)
        raw = interpolate_tree(raw, self.env, str(path))
        includes = raw.pop("include", None)
        doc = _dump(validate(raw, str(path)))
        _resolve_paths(doc, base)
        fd = _FileDoc(path, doc, tags)
        if includes is not None:
            self._include(fd, includes, (*stack, path))
        self._cache[(path, base)] = fd
        for name in list(doc.get("services") or {}):
            self._extends(fd, name, ())
        return fd

    def _include(self, fd: _FileDoc, includes: Any, stack: tuple[Path, ...]) -> None:
        if not isinstance(includes, list):
            raise ComposeError(f"expected a list of files to include, got {schema.kind(includes)}", str(fd.path),
                               "include")
        for i, entry in enumerate(includes):
            loc = ("include", i)
            if isinstance(entry, str):
                entry = {"path": entry}
            if not isinstance(entry, dict) or "path" not in entry or set(entry) - {"path", "project_directory",
                                                                                    "env_file"}:
                raise ComposeError("expected a path or a mapping with path, project_directory, env_file",
                                   str(fd.path), loc)
            paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
            files = [Path(_abs(p, fd.path.parent)) for p in paths]
            proj_dir = Path(_abs(entry.get("project_directory") or str(files[0].parent), fd.path.parent))
            env_files = entry.get("env_file")
            env_paths = [Path(_abs(p, fd.path.parent)) for p in
                         ([env_files] if isinstance(env_files, str) else env_files or [])]
            if not env_paths and (proj_dir / ".env").is_file():
                env_paths = [proj_dir / ".env"]
            env = dict(self.environ)
            dotenv: dict[str, str] = {}
            for ep in env_paths:
                dotenv.update(parse_env_file(ep, {**dotenv, **self.environ}))
            env = {**dotenv, **self.environ}
            sub = Loader(env, self.environ, proj_dir)
            merged: dict[str, Any] = {}
            for f in files:
                subdoc = sub.load_file(f, stack, top=True)
                merged = merge_projects(merged, subdoc.data, subdoc.tags)
            for section in ("services", "networks", "volumes", "configs", "secrets"):
                for name, item in (merged.get(section) or {}).items():
                    mine = fd.data.setdefault(section, {})
                    if name in mine:
                        raise ComposeError(f"{section[:-1]} {name!r} is also defined by the included "
                                           f"file {files[0]}", str(fd.path), (section, name))
                    mine[name] = item

    def _extends(self, fd: _FileDoc, name: str, seen: tuple[tuple[Path, str], ...]) -> dict[str, Any]:
        services = fd.data.setdefault("services", {})
        if name not in services:
            raise ComposeError(f"cannot extend service {name!r}: it is not defined in this file",
                               str(fd.path), ("services", name))
        svc = services[name]
        ext = svc.get("extends")
        if not ext:
            return svc
        key = (fd.path, name)
        if key in seen:
            chain = " -> ".join(f"{p.name}:{s}" for p, s in (*seen, key))
            raise ComposeError(f"extends cycle: {chain}", str(fd.path), ("services", name, "extends"))
        other = self.load_file(Path(ext["file"])) if ext.get("file") else fd
        if ext["service"] not in (other.data.get("services") or {}):
            raise ComposeError(f"extends: service {ext['service']!r} is not defined in {other.path}",
                               str(fd.path), ("services", name, "extends"))
        base = self._extends(other, ext["service"], (*seen, key))
        local = {k: v for k, v in svc.items() if k != "extends"}
        base = {k: v for k, v in base.items() if k != "extends"}
        merged = merge_service(base, local, fd.tags, ("services", name))
        services[name] = merged
        return merged


# --- the whole project --------------------------------------------------------------------------------


def find_files(opts: LoadOptions, environ: Mapping[str, str]) -> list[Path]:
    cwd = Path(opts.cwd or os.getcwd())
    if opts.files:
        return [Path(_abs(f, cwd)) for f in opts.files]
    if environ.get("COMPOSE_FILE"):
        sep = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        return [Path(_abs(f, cwd)) for f in environ["COMPOSE_FILE"].split(sep) if f]
    where = Path(opts.project_directory) if opts.project_directory else cwd
    for d in (where, *where.parents):
        for name in DEFAULT_FILES:
            if (d / name).is_file():
                found = [d / name]
                for over in OVERRIDE_FILES:
                    if (d / over).is_file():
                        found.append(d / over)
                        break
                return found
        if opts.project_directory:
            break
    raise ComposeError(f"no compose file found in {where} (looked for {', '.join(DEFAULT_FILES)}); "
                       "use -f FILE")


_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def normalize_project_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


@dataclass
class Loaded:
    name: str
    working_dir: Path
    config_files: list[Path]
    model: m.Project
    environment: dict[str, str]
    origin: dict[str, str]  # service -> file that defines it (first)
    disabled: dict[str, m.Service]  # services left out by profiles


def load(opts: LoadOptions) -> Loaded:
    from dockyard_compose import project as semantics

    environ = dict(os.environ if opts.environ is None else opts.environ)
    files = find_files(opts, environ)
    for f in files:
        if not f.is_file():
            raise ComposeError("no such file", str(f))
    work = Path(_abs(opts.project_directory, Path(opts.cwd or os.getcwd()))) if opts.project_directory \
        else files[0].parent
    env_paths = [Path(_abs(p, Path(opts.cwd or os.getcwd()))) for p in opts.env_files]
    if not env_paths and (work / ".env").is_file():
        env_paths = [work / ".env"]
    dotenv: dict[str, str] = {}
    for ep in env_paths:
        if not ep.is_file():
            raise ComposeError("env file not found", str(ep))
        dotenv.update(parse_env_file(ep, {**dotenv, **environ}))
    env = {**dotenv, **environ}

    loader = Loader(env, environ, work)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for f in files:
        doc = loader.load_file(f, top=True)
        for svc in doc.data.get("services") or {}:
            origin.setdefault(svc, str(f))
        merged = merge_projects(merged, doc.data, doc.tags)
    label = files[0].name if len(files) == 1 else "+".join(str(f) for f in files)
    project = validate(merged, label if len(files) > 1 else str(files[0]))

    if project.name is not None and not _NAME_OK.match(project.name):
        raise ComposeError(f"invalid project name {project.name!r}: it must contain only lowercase letters, "
                           "digits, dashes and underscores, and start with a letter or digit",
                           str(files[0]), "name")
    name = opts.project_name or env.get("COMPOSE_PROJECT_NAME") or project.name
    if name:
        if not _NAME_OK.match(name):
            raise ComposeError(f"invalid project name {name!r}: it must contain only lowercase letters, "
                               "digits, dashes and underscores, and start with a letter or digit",
                               str(files[0]), "name" if name == project.name else None)
    else:
        name = normalize_project_name(work.name)
        if not name:
            raise ComposeError(f"cannot derive a project name from {work}; use -p NAME", str(files[0]))
    project.name = name

    profiles = opts.profiles or [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p]
    disabled = semantics.apply_profiles(project, profiles, opts.targets, str(files[0]))
    semantics.resolve_environment(project, env, origin)
    semantics.add_defaults(project)
    semantics.check(project, origin, str(files[0]))
    return Loaded(name=name, working_dir=work, config_files=files, model=project, environment=env,
                  origin=origin, disabled=disabled)


__all__ = ["LoadOptions", "Loaded", "load", "merge_service", "merge_projects", "format_path",
           "validate", "read_yaml"]
