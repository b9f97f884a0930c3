"""Feature hooks of dockyard-swarm (entry point ``dockyard.plugins: swarm``).

- an engine with ``cluster-store`` and ``cluster-advertise`` runs the ``swarm-heartbeat``
  background service (its node record: :mod:`dockyard_swarm.membership_agent`); one with the
  cluster option ``swarm.master=tcp://ADDR:PORT`` also runs the ``swarm-master`` service (a
  manager beside it: :mod:`dockyard_swarm.master`, Docker Machine's swarm master);
- a manager runs the ``swarm-reschedule`` background service (leader only:
  :mod:`dockyard_swarm.reschedule`) and, when replicated, the ``swarm-leader`` middleware that
  forwards a replica's requests to the leader (:mod:`dockyard_swarm.leader_proxy`);
- the daemon keys of the manager's replication (``replication``, ``replication-ttl``).
"""

from __future__ import annotations

from typing import Any

from dockyard.specs import hookimpl
from dockyard.specs.api import ApiMiddleware
from dockyard.specs.config import ConfigOption
from dockyard.specs.events import BackgroundService

MANAGER = "manager"


@hookimpl
def dockyard_config_options() -> list[ConfigOption]:
    return [
        ConfigOption("replication", bool, False,
                     "swarm manager: replicate, one leader elected through the cluster store (needs cluster-advertise)"),
        ConfigOption("replication-ttl", int, 4, "swarm manager: seconds after which a dead leader is replaced"),
    ]


@hookimpl
def dockyard_background_services(kernel: Any) -> list[BackgroundService]:
    config = kernel.config
    if kernel.role == MANAGER:
        from dockyard_swarm import reschedule

        return [BackgroundService("swarm-reschedule", reschedule.run)]
    services: list[BackgroundService] = []
    if config.get("cluster-store") and config.get("cluster-advertise"):
        from dockyard_swarm import membership_agent

        services.append(BackgroundService("swarm-heartbeat", membership_agent.run_in_engine))
    if config.get("cluster-store") and "swarm.master" in config.options_for("cluster-opts"):
        from dockyard_swarm import master

        services.append(BackgroundService("swarm-master", master.run))
    return services


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> list[ApiMiddleware]:
    if kernel.role != MANAGER or not kernel.config.get("replication"):
        return []
    from dockyard_swarm import leader_proxy

    return [ApiMiddleware("swarm-leader", leader_proxy.middleware(kernel), order=1)]
