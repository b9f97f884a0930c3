"""``dockyard build``: send a build context to dockyardd's ``POST /build`` and show the stream.

A thin client, like ``docker build``: the context directory is packed into a tar with
``.dockerignore`` applied (the Dockerfile and ``.dockerignore`` are always sent; a Dockerfile
outside the context is added under a private name), and the daemon does the rest. Output is
rendered with rich on a terminal (steps, cache hits, RUN output, errors) and as plain lines
otherwise; ``-q`` prints only the image ID.
The exit status is a failed RUN's exit code, as with ``docker build``.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import sys
import tarfile
from pathlib import Path
from typing import Any

import click


def pack_context(root: Path, dockerfile: Path | None) -> tuple[bytes, str]:
    """The context tar (``.dockerignore`` applied) and the Dockerfile's name inside it."""
    from dockyard_builder.dockerignore import Matcher

    root = root.resolve()
    ignore_file = root / ".dockerignore"
    matcher = Matcher.from_file_text(ignore_file.read_text(errors="replace")) if ignore_file.is_file() else None
    df = (dockerfile if dockerfile is not None else root / "Dockerfile")
    df = df if df.is_absolute() else (Path.cwd() / df)
    df = Path(os.path.abspath(df))
    try:
        df_name = df.relative_to(root).as_posix()
        inside = True
    except ValueError:
        df_name, inside = f".dockerfile.{secrets.token_hex(10)}", False
    always = {df_name, ".dockerignore"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            dirnames.sort()
            for name in list(dirnames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if matcher is not None and matcher.excluded(rel) and not matcher.has_exceptions():
                    dirnames.remove(name)
                    continue
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    dirnames.remove(name)
                    _add(tf, full, rel)
                elif matcher is None or not matcher.excluded(rel):
                    _add(tf, full, rel)
            for name in sorted(filenames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if matcher is not None and matcher.excluded(rel) and rel not in always:
                    continue
                _add(tf, os.path.join(dirpath, name), rel)
        if not inside:
            if not df.is_file():
                raise click.ClickException(f"Cannot locate specified Dockerfile: {dockerfile}")
            _add(tf, str(df), df_name)
    if inside and not df.is_file():
        raise click.ClickException(f"Cannot locate specified Dockerfile: {df_name}")
    return buf.getvalue(), df_name


def _add(tf: tarfile.TarFile, path: str, rel: str) -> None:
    """One entry, owned by root as the docker CLI sends them (no user-database lookups)."""
    import stat

    st = os.lstat(path)
    ti = tarfile.TarInfo(rel)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = int(st.st_mtime)
    if stat.S_ISREG(st.st_mode):
        ti.size = st.st_size
        with open(path, "rb") as f:
            tf.addfile(ti, f)
    elif stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
        tf.addfile(ti)
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(path)
        tf.addfile(ti)


def _pairs(values: tuple[str, ...], what: str, from_env: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not k:
            raise click.BadParameter(f"invalid {what} {v!r}")
        out[k] = val if eq else (os.environ.get(k) if from_env else "")
    return out


@click.command(name="build", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("path", type=click.Path(exists=True, file_okay=False), default=".")
@click.option("-t", "--tag", "tags", multiple=True, help="name and optionally a tag (name:tag); repeatable")
@click.option("-f", "--file", "dockerfile", type=click.Path(dir_okay=False), help="Dockerfile (default PATH/Dockerfile)")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY[=VALUE]", help="set a build-time variable")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="set metadata on the image")
@click.option("--target", default="", help="build this stage (and the ones before it) only")
@click.option("--no-cache", is_flag=True, help="do not use the build cache")
@click.option("-q", "--quiet", is_flag=True, help="print only the image ID")
@click.option("--rm/--no-rm", default=True, show_default=True, help="remove intermediate containers")
@click.option("--force-rm", is_flag=True, help="always remove intermediate containers, also on failure")
@click.option("--pull", is_flag=True, help="always try to pull newer base images")
@click.option("--platform", default="", help="target platform(s): linux/arm64 (RUN steps emulated), or a list "
                                             "linux/amd64,linux/arm64 built into one index under the tags")
@click.option("--network", "network", default="", help="network mode for RUN (default, host, none)")
@click.pass_context
def build(ctx: click.Context, path: str, tags: tuple[str, ...], dockerfile: str | None,
          build_args: tuple[str, ...], labels: tuple[str, ...], target: str, no_cache: bool, quiet: bool,
          rm: bool, force_rm: bool, pull: bool, platform: str, network: str) -> None:
    """Build an image from a Dockerfile and a context directory (through dockyardd)."""
    from dockyard.cli.output import client_of
    from dockyard.client import human_size
    from dockyard.errors import DockyardError

    out, err = _console(sys.stdout), _console(sys.stderr)
    body, df_name = pack_context(Path(path), Path(dockerfile) if dockerfile else None)
    if not quiet:
        err.print(f"Sending build context to dockyardd  {human_size(len(body))}", style="dim")
    params: dict[str, Any] = {"t": list(tags), "dockerfile": df_name, "q": int(quiet), "nocache": int(no_cache),
                              "rm": int(rm), "forcerm": int(force_rm), "pull": int(pull)}
    if build_args:
        params["buildargs"] = json.dumps(_pairs(build_args, "--build-arg", True))
    if labels:
        params["labels"] = json.dumps(_pairs(labels, "--label", False))
    if target:
        params["target"] = target
    if platform:
        params["platform"] = platform
    if network:
        params["networkmode"] = network
    client = client_of(ctx, timeout=None)
    image_id = ""
    bars = _Bars(out) if not quiet else None
    try:
        for msg in client.stream_json("POST", "/build", params, body=body,
                                      headers={"Content-Type": "application/x-tar"}):
            if "errorDetail" in msg or "error" in msg:
                if bars is not None:
                    bars.stop()
                detail = msg.get("errorDetail") or {}
                err.print(f"error: {detail.get('message') or msg.get('error')}", style="bold red")
                sys.exit(int(detail.get("code") or 1))
            if "aux" in msg:
                image_id = (msg["aux"] or {}).get("ID", "") or image_id
                continue
            if quiet:
                continue
            assert bars is not None
            if "status" in msg:  # a base image being pulled: one bar per layer
                bars.update(msg)
                continue
            text = msg.get("stream")
            if text is not None:
                bars.stop()
                out.print(text, end="", style=_style(text), markup=False)
    except DockyardError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if bars is not None:
            bars.stop()
    if quiet:
        click.echo(image_id)


class _Plain:
    """The part of a rich Console the build output uses, for a pipe or a file: rich prints no
    style there anyway, and importing it costs about 45 ms (most of a cached ``dockyard build -q``)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def print(self, text: str, end: str = "\n", style: str = "", markup: bool = False) -> None:
        self.stream.write(text + end)
        self.stream.flush()


def _console(stream: Any) -> Any:
    if not stream.isatty():
        return _Plain(stream)
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True)


class _Bars:
    """Pull lines of a build: rich progress bars per layer (bytes, speed) on a terminal; off a
    terminal, one line per status change, like the docker CLI."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.seen: dict[str, str] = {}

    def update(self, msg: dict[str, Any]) -> None:
        layer = msg.get("id") or ""
        detail = msg.get("progressDetail") or {}
        if not layer:
            self.stop()
            self.console.print(str(msg.get("status", "")), markup=False, style="dim")
            return
        if isinstance(self.console, _Plain):
            status = str(msg.get("status", ""))
            if self.seen.get(layer) != status:
                self.seen[layer] = status
                self.console.print(f"{layer[:12]}: {status}")
            return
        if self.progress is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), console=self.console, transient=False)
            self.progress.start()
        total = detail.get("total") or None
        desc = f"{layer[:12]} {msg.get('status', '')}"
        if layer not in self.tasks:
            self.tasks[layer] = self.progress.add_task(desc, total=total)
        self.progress.update(self.tasks[layer], description=desc, total=total,
                             completed=detail.get("current") or (total if "complete" in desc.lower() else 0))

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.tasks.clear()


def _style(text: str) -> str:
    if text.startswith("Step "):
        return "bold cyan"
    if text.startswith(" ---> Using cache"):
        return "green"
    if text.startswith(" ---> "):
        return "dim"
    if text.startswith(("Successfully built", "Successfully tagged")):
        return "bold green"
    if text.startswith(("Removing intermediate", "[Warning]")):
        return "yellow" if text.startswith("[Warning]") else "dim"
    return ""
