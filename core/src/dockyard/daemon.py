"""``dockyardd``: the daemon process (flags, pidfile, signals) around a Kernel and the server."""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from dockyard import __version__
from dockyard.config import Config
from dockyard.errors import DockyardError, InvalidArgument, PluginConflictError

log = logging.getLogger("dockyardd")

DEFAULT_CONFIG_FILE = "/etc/dockyard/daemon.json"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "error": logging.ERROR, "fatal": logging.CRITICAL}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyardd", description="The dockyard daemon (dockerd's flags).")
    p.add_argument("-H", "--host", action="append", dest="hosts", metavar="HOST",
                   help="socket to listen on: unix:///path, tcp://host:port, fd:// or (Windows) npipe:////./pipe/NAME (repeatable)")
    p.add_argument("-G", "--group", help="group of the unix sockets (default docker, when that group exists)")
    p.add_argument("--data-root", help="persistent state (default /var/lib/dockyard)")
    p.add_argument("--exec-root", help="runtime state (default /run/dockyard)")
    p.add_argument("-p", "--pidfile", help="PID file (default <exec-root>/dockyardd.pid)")
    p.add_argument("--config-file", default=None, help=f"daemon.json (default {DEFAULT_CONFIG_FILE})")
    p.add_argument("-l", "--log-level", choices=sorted(LEVELS), help="log level (default info)")
    p.add_argument("-D", "--debug", action="store_true", default=None, help="debug logging")
    p.add_argument("-s", "--storage-driver", help="layer driver (default overlay)")
    p.add_argument("--storage-opt", action="append", dest="storage_opts", help="layer driver option")
    p.add_argument("--default-runtime", help="OCI runtime for new containers (default crun)")
    p.add_argument("--cluster-store", help="cluster store URL: etcd://HOST:PORT[,HOST:PORT...]/PREFIX")
    p.add_argument("--cluster-advertise", metavar="ADDR:PORT",
                   help="address (or IFACE:PORT) at which a cluster reaches this daemon: an engine's "
                        "node record (its heartbeat), a manager's address among replicas")
    p.add_argument("--cluster-store-opt", action="append", dest="cluster_store_opts", metavar="KEY=VALUE",
                   help="cluster option, as dockerd's (discovery.heartbeat=SECONDS, discovery.ttl=SECONDS, "
                        "the store driver's own keys): the cluster-opts key")
    p.add_argument("--role", help="which services back the API: engine (default) or manager")
    p.add_argument("--authorization-plugin", action="append", dest="authorization_plugins", metavar="NAME",
                   help="authorization plugin every API request passes through (repeatable; "
                        "needs dockyard-docker-plugins)")
    p.add_argument("--experimental", action="store_true", default=None,
                   help="enable dockerd's experimental features (checkpoint and restore)")
    p.add_argument("--label", action="append", dest="labels", help="engine label key=value")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries", metavar="REGISTRY",
                   help="registry reached over plain HTTP or with an unverified certificate (repeatable; "
                        "the insecure-registries key of dockyard-distribution)")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors", metavar="URL",
                   help="preferred Docker Hub mirror, tried before Docker Hub for docker.io pulls "
                        "(repeatable; the registry-mirrors key of dockyard-distribution)")
    p.add_argument("--tls", nargs="?", const=True, type=_flag_bool, metavar="BOOL",
                   help="use TLS on tcp:// listeners; implied by --tlsverify")
    p.add_argument("--tlsverify", nargs="?", const=True, type=_flag_bool, metavar="BOOL",
                   help="use TLS and verify the remote (clients need a certificate signed by --tlscacert)")
    p.add_argument("--tlscacert", help="trust certs signed only by this CA (default ~/.docker/ca.pem)")
    p.add_argument("--tlscert", help="path to TLS certificate file (default ~/.docker/cert.pem)")
    p.add_argument("--tlskey", help="path to TLS key file (default ~/.docker/key.pem)")
    p.add_argument("-v", "--version", action="version", version=f"dockyardd {__version__}")
    return p


def _flag_bool(text: str) -> bool:
    """``--tls=false``, ``--tlsverify=1``: Go's boolean flag values, as dockerd takes them."""
    from dockyard.tlsconfig import parse_bool

    try:
        return parse_bool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {
        "hosts": args.hosts, "group": args.group, "data-root": args.data_root, "exec-root": args.exec_root,
        "pidfile": args.pidfile, "log-level": args.log_level, "debug": args.debug,
        "storage-driver": args.storage_driver, "storage-opts": args.storage_opts,
        "default-runtime": args.default_runtime, "cluster-store": args.cluster_store,
        "cluster-advertise": args.cluster_advertise, "cluster-opts": args.cluster_store_opts,
        "role": args.role, "authorization-plugins": args.authorization_plugins,
        "labels": args.labels, "insecure-registries": args.insecure_registries, "experimental": args.experimental,
        "registry-mirrors": args.registry_mirrors,
        "tls": args.tls, "tlsverify": args.tlsverify,
        "tlscacert": args.tlscacert, "tlscert": args.tlscert, "tlskey": args.tlskey,
    }
    explicit = args.config_file is not None
    path = args.config_file if explicit else DEFAULT_CONFIG_FILE
    if explicit and not Path(path).exists():
        raise InvalidArgument(f"configuration file {path} does not exist")
    return Config.load(path, overrides)


class PidFile:
    """The daemon's PID file, exclusively locked for the daemon's lifetime.

    A second daemon with the same file fails to take the lock and refuses to start, naming
    the holder (dockerd's rule); a file left by a killed daemon holds no lock and is reused.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise InvalidArgument(f"pid file found ({self.path}, pid {holder}): ensure dockyardd is "
                                  "not running or delete the file") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)  # closing drops the lock
        self._fd = None


def configure_logging(config: Config) -> None:
    level = logging.DEBUG if config.get("debug") else LEVELS.get(str(config.get("log-level")), logging.INFO)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


async def run(config: Config) -> int:
    from dockyard import sdnotify
    from dockyard.kernel import Kernel
    from dockyard.server import build_app, parse_host, serve, socket_gid
    from dockyard.tlsconfig import ServerTLS, check_listeners

    configure_logging(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Handlers first: a SIGHUP during start-up must not kill the daemon (its default action).
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    kernel = Kernel.build(config)
    conflicts = [p for p in kernel.registry.problems if isinstance(p, PluginConflictError)]
    if conflicts:
        raise conflicts[0]
    for problem in kernel.registry.problems:
        log.warning("%s", problem)
    kernel.validate_config()
    listeners = [parse_host(h) for h in config.hosts]
    # socket activation: taken (and the variables cleared) before anything forks
    passed = sdnotify.listen_fds() if any(lst.kind == "fd" for lst in listeners) else []
    # kept from the children (conmon, containers): only dockyardd talks to its supervisor
    notify_to = {"NOTIFY_SOCKET": os.environ.pop("NOTIFY_SOCKET", "")}
    tls = ServerTLS.from_config(config)
    ssl_context = tls.context() if tls.enabled else None  # dockerd loads the files even for unix only
    for warning in check_listeners(listeners, tls):
        log.warning("%s", warning)
    gid = socket_gid(config.get("group"))
    pidfile = PidFile(config.pidfile)
    pidfile.acquire()
    runner = None
    bound: list[str] = []
    try:
        config.data_root.mkdir(parents=True, exist_ok=True)
        config.exec_root.mkdir(parents=True, exist_ok=True)
        await kernel.start()
        app = build_app(kernel)
        runner, bound = await serve(app, listeners, ssl_context, passed, socket_group=gid)
        secure_roots(config, bound)
        # what start-up made (modules, plugins, services) lives as long as the daemon: kept out
        # of the collector's full scans, which paused the loop 0.25-0.6 s at a time in a swarm
        # manager of 1,000 nodes (docker run p99 38 -> 15 ms; bench/benchmarks/swarm_run.py)
        gc.freeze()
        kernel.emit("daemon", "start", kernel.daemon_id, name=kernel.facts()["hostname"])
        log.info("dockyardd %s listening on %s (data-root %s)", __version__,
                 ", ".join(config.hosts), config.data_root)
        if any(lst.kind == "tcp" for lst in listeners):
            log.info("tcp:// listeners: %s", tls.describe())
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(kernel))
        # Type=notify: ready once the services run and every socket serves
        _notify(sdnotify, notify_to, f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving on {', '.join(config.hosts)}")
        await stop.wait()
        _notify(sdnotify, notify_to, "STOPPING=1\nSTATUS=stopping (containers keep running)")
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        for path in bound:
            Path(path).unlink(missing_ok=True)
        await kernel.stop()
        pidfile.release()
        log.info("dockyardd stopped")


def _notify(sdnotify: Any, environ: dict[str, str], state: str) -> None:
    try:
        sdnotify.notify(state, environ)
    except OSError as exc:  # the supervisor went away: nothing to tell
        log.warning("sd_notify failed: %s", exc)


def secure_roots(config: Config, sockets: list[str]) -> None:
    """No other user reads or traverses the data root or the exec root (state database,
    bundles with their environment, volumes with what containers put there, setuid files
    included: the CVE-2021-41091 class). The data root is 0710 as dockerd keeps it, the exec
    root 0700 as containerd's, or 0710 with the group of an API socket inside it so that group
    reaches the socket. Roots left open by an earlier version are tightened at every start."""
    os.chmod(config.data_root, 0o710)
    exec_root = config.exec_root.resolve()
    groups = {os.stat(p).st_gid for p in sockets
              if os.path.exists(p) and Path(p).resolve().is_relative_to(exec_root)} - {0}
    if groups:
        os.chown(exec_root, -1, min(groups))
        os.chmod(exec_root, 0o710)
    else:
        os.chmod(exec_root, 0o700)


def _reload(kernel: Any) -> None:
    """SIGHUP: re-read the config file; only reloadable options change (as dockerd does)."""
    current: Config = kernel.config
    try:
        fresh = Config.load(current.config_file)
        options = kernel.config_options(fresh.values)  # drivers' only when a key needs them
        fresh.validate(options)
        reloadable = {o.name for o in (*_core_options(), *options) if o.reloadable}
        changed = {k: v for k, v in fresh.values.items() if k in reloadable and current.values.get(k) != v}
        current.values.update(changed)
        kernel.validate_config(reload=True)
        configure_logging(current)
        logging.getLogger().setLevel(
            logging.DEBUG if current.get("debug") else LEVELS.get(str(current.get("log-level")), logging.INFO))
        kernel.emit("daemon", "reload", kernel.daemon_id, **{k: str(v) for k, v in changed.items()})
        log.info("configuration reloaded: %s", ", ".join(sorted(changed)) or "no changes")
    except DockyardError as exc:
        log.error("configuration reload refused: %s", exc)


def _core_options() -> tuple[Any, ...]:
    from dockyard.config import CORE_OPTIONS
    return CORE_OPTIONS


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = config_from_args(args)
        return asyncio.run(run(config))
    except DockyardError as exc:
        print(f"dockyardd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
