"""``machine create --swarm --swarm-master --swarm-discovery``: what is checked, and the engine
flags a swarm machine's engine starts with once its address is known."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.model import Host
from dockyard_machine.options import MachineCreate, SwarmOptions
from dockyard_machine.service import MachineService


def test_swarm_options_are_checked() -> None:
    for doc, words in (({"Master": True}, "need --swarm"), ({"Discovery": "etcd://h:1/p"}, "need --swarm"),
                       ({"IsSwarm": True}, "needs --swarm-discovery"),
                       ({"IsSwarm": True, "Discovery": "nowhere"}, "--swarm-discovery")):
        with pytest.raises(InvalidArgument, match=words):
            MachineCreate.from_json({"Name": "h1", "SwarmOptions": doc}).check()
    req = MachineCreate.from_json({"Name": "h1", "SwarmOptions": {"IsSwarm": True, "Master": True,
                                                                  "Discovery": "etcd://10.0.0.1:2379/s"}}).check()
    assert req.swarm.to_json() == {"IsSwarm": True, "Master": True, "Discovery": "etcd://10.0.0.1:2379/s",
                                   "Host": "", "Address": ""}
    assert MachineCreate.from_json({"Name": "h1"}).swarm == SwarmOptions()


def test_swarm_engine_flags_name_the_store_and_the_hosts_address() -> None:
    swarm = SwarmOptions(is_swarm=True, discovery="etcd://10.0.0.1:2379/s")
    assert swarm.engine_flags("10.0.0.7", 2376) == ["--cluster-store", "etcd://10.0.0.1:2379/s",
                                                    "--cluster-advertise", "10.0.0.7:2376"]
    assert SwarmOptions().engine_flags("10.0.0.7", 2376) == []
    master = MachineService._swarm_options(dataclass_replace(swarm, master=True), ["10.0.0.7"])
    assert master.host == "tcp://10.0.0.7:3376"
    # the master's engine also runs the manager there (dockyard-swarm's swarm.master option)
    assert master.engine_flags("10.0.0.7", 2376)[-2:] == ["--cluster-store-opt", "swarm.master=tcp://10.0.0.7:3376"]


def dataclass_replace(obj: SwarmOptions, **kw: object) -> SwarmOptions:
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_swarm_flags_of_a_machine_being_created(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dockyard.config import Config
    from dockyard.kernel import Kernel

    kernel = Kernel.build(Config(values={"data-root": str(tmp_path / "d"), "exec-root": str(tmp_path / "r")}),
                          autoload=False, environ={})
    svc = MachineService(kernel)
    host = Host(id="x", name="h1", driver="netns", addresses=["10.0.0.7"], engine_url="tcp://10.0.0.7:2376")
    assert svc.swarm_flags(host) == []
    svc._swarm["h1"] = SwarmOptions(is_swarm=True, discovery="etcd://10.0.0.1:2379/s")
    assert svc.swarm_flags(host)[-1] == "10.0.0.7:2376"
