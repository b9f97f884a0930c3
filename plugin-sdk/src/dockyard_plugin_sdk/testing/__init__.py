"""Test helpers for plugin authors, usable with or without pytest.

* :mod:`.hooks` -- :class:`HookRecorder`: every hook call on a pluggy manager;
* :mod:`.leaks` -- :func:`snapshot_host` and :class:`Leaks` (kernel objects and child processes
  a test left behind), :class:`Owners` (the owner tokens whose objects count),
  :func:`purge_owned`;
* :mod:`.daemon` -- :func:`start_daemon` and :class:`Daemon`: a real dockyardd on private roots,
  with the docker CLI, our CLI and docker-py against it; :func:`engine_plugins_env`: the
  environment that loads a test's own plugin module into an engine it starts;
* :mod:`.waiting` -- :func:`wait_for` and friends: wait on a condition, never for a fixed time;
* :mod:`.hosts` -- :class:`NetnsHosts` and :class:`NetnsHost`: test hosts (network namespaces
  each running an engine with mutual TLS) made through the ``netns`` provision driver;
  :func:`netns_cluster`: such hosts joined to one etcd;
* :mod:`.etcd` -- :func:`start_etcd` and :class:`EtcdCluster`: a real etcd (one member or a
  cluster) on loopback ports in a private directory, killed by PID when closed;
* :mod:`.tls` -- :class:`TestCA`: a throwaway CA, engine and client certificates;
* :mod:`.supervised` (import it from there) -- :class:`~.supervised.SupervisedDaemon` and
  :func:`~.supervised.start_supervisord`: dockyardd under a real supervisor.

:mod:`dockyard_plugin_sdk.pytest_plugin` wraps them in fixtures (``dockyard_kernel``,
``hook_recorder``, ``no_leaks``, ``dockyard_owners``, ``dockyardd``, ``dockyardd_factory``,
``start_dockyardd``, ``dockyardd_client``, ``netns_hosts``) and the session-wide
``--dockyard-leak-check``.
"""

from __future__ import annotations

from .daemon import API_FRONT, Daemon, engine_plugins_env, owner_of, start_daemon, wait_for_socket
from .etcd import EtcdCluster, EtcdMember, etcd_unavailable, start_etcd
from .hooks import HookCall, HookRecorder
from .hosts import NetnsCluster, NetnsHost, NetnsHosts, netns_cluster, netns_hosts_unavailable
from .leaks import (
    CATEGORIES,
    HostSnapshot,
    Leaks,
    Owners,
    dockyard_named,
    owner_of_data_root,
    purge_owned,
    snapshot_host,
    wait_for_no_leaks,
)
from .tls import TestCA
from .waiting import WaitTimeout, async_wait_for, async_wait_for_exit, stays, wait_for, wait_for_exit

__all__ = [
    "API_FRONT", "CATEGORIES", "Daemon", "EtcdCluster", "EtcdMember", "HookCall", "HookRecorder", "HostSnapshot", "Leaks", "NetnsCluster", "NetnsHost",
    "NetnsHosts", "Owners", "TestCA", "WaitTimeout", "async_wait_for", "async_wait_for_exit", "dockyard_named",
    "engine_plugins_env", "etcd_unavailable", "netns_cluster", "netns_hosts_unavailable", "owner_of", "owner_of_data_root", "purge_owned", "snapshot_host", "start_daemon", "start_etcd",
    "stays", "wait_for", "wait_for_exit", "wait_for_no_leaks", "wait_for_socket",
]
