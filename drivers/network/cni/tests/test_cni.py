"""What only the CNI driver does: conflists, the cached result, CHECK, plugin errors."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import stat
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, Unavailable
from dockyard_network_cni import cni
from dockyard_network_cni.driver import CniDriver, bridge_name
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.network import TEST_SUBNET_BASE, NetworkHarness, leftovers, random_owner

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (netns, bridges)")


@pytest.fixture
async def harness(tmp_path):
    owner = random_owner()
    drv = CniDriver(make_context(tmp_path, owner=owner))
    await drv.setup()
    h = NetworkHarness(drv, TEST_SUBNET_BASE)
    yield h
    errors = await h.teardown()
    await drv.close()
    assert not errors, errors
    assert leftovers(owner) == []


def _links_in(netns_path: str) -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute(netns=netns_path, flags=0) as ipr:
        return [m.get("ifname") for m in ipr.link("dump")]


def _delete_in(netns_path: str, ifname: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute(netns=netns_path, flags=0) as ipr:
        ipr.link("del", ifname=ifname)


@needs_root
async def test_conflist_ip_range_and_check(harness: NetworkHarness) -> None:
    drv: CniDriver = harness.driver  # type: ignore[assignment]
    network = harness.make_network(options={"com.docker.network.driver.mtu": "1400"})
    subnet = ipaddress.ip_network(network.ipam_pools[0].subnet)
    rng = list(subnet.subnets(new_prefix=26))[2]
    network.ipam_pools[0].ip_range = str(rng)
    harness.networks.append(network)
    extra = await drv.create_network(network)
    assert extra["bridge"] == bridge_name(drv.owner, network.id) and drv.owner in extra["bridge"]
    conf = json.loads((drv.conf_dir / f"{network.id}.conflist").read_text())
    bridge = conf["plugins"][0]
    assert conf["cniVersion"] == "1.0.0" and bridge["type"] == "bridge" and bridge["mtu"] == 1400
    assert bridge["ipam"]["ranges"][0][0]["rangeStart"] == str(rng.network_address + 1)
    req, res = await harness.join(network)
    assert ipaddress.ip_interface(res.ipv4_address).ip in rng
    assert res.gateway == network.ipam_pools[0].gateway and res.mac_address
    assert Path(f"/sys/class/net/{extra['bridge']}/mtu").read_text().strip() == "1400"
    await drv.check(req)  # CHECK passes on an intact endpoint
    await asyncio.to_thread(_delete_in, req.netns_path, "eth0")
    with pytest.raises(cni.CniError):
        await drv.check(req)
    await harness.leave(req, res)  # DEL copes with the missing interface
    assert not list((drv.results_dir / network.id).glob("*.json"))


@needs_root
async def test_a_new_instance_leaves_with_the_cached_result(harness: NetworkHarness, tmp_path: Path) -> None:
    drv: CniDriver = harness.driver  # type: ignore[assignment]
    network = await harness.create_network()
    req, res = await harness.join(network)
    assert "eth0" in await asyncio.to_thread(_links_in, req.netns_path)
    ip = ipaddress.ip_interface(res.ipv4_address).ip
    lease = drv.ipam_dir / f"dockyard-{drv.owner}-{network.id[:12]}" / str(ip)
    assert lease.exists()  # host-local's record of the address
    again = CniDriver(drv.context)  # a restarted daemon
    await again.setup()
    await again.restore(network)
    await again.leave(req, res)
    assert "eth0" not in await asyncio.to_thread(_links_in, req.netns_path)
    assert not lease.exists()  # the address went back


@needs_root
async def test_setup_removes_bridges_no_conflist_explains(harness: NetworkHarness) -> None:
    drv: CniDriver = harness.driver  # type: ignore[assignment]
    network = await harness.create_network()
    req, res = await harness.join(network)
    name = bridge_name(drv.owner, network.id)
    assert Path(f"/sys/class/net/{name}").exists()
    await harness.leave(req, res)
    (drv.conf_dir / f"{network.id}.conflist").unlink()  # the network was removed while down
    await CniDriver(drv.context).setup()
    assert not Path(f"/sys/class/net/{name}").exists()


def _fake_plugins(tmp_path: Path, fail_add: bool) -> Path:
    """A CNI_PATH with a fake ``bridge`` (logs its calls; ADD fails with code 7 when asked) and a
    no-op ``host-local``."""
    d = tmp_path / "fakecni"
    d.mkdir()
    log = tmp_path / "calls.log"
    add = ("echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"bad config\",\"details\":\"nope\"}'; exit 1"
           if fail_add else
           "echo '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.213.99.5/24\",\"gateway\":\"10.213.99.1\"}]}'")
    script = f"""#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}' ;;
ADD) cat > "{tmp_path}/add-stdin.json"; echo "ADD $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS" >> "{log}"; {add} ;;
DEL) cat > "{tmp_path}/del-stdin.json"; echo "DEL $CNI_CONTAINERID $CNI_IFNAME" >> "{log}" ;;
esac
"""
    for name in ("bridge", "host-local"):
        p = d / name
        p.write_text(script if name == "bridge" else "#!/bin/sh\nexit 0\n")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return d


async def test_failed_add_rolls_back_with_del(tmp_path: Path) -> None:
    path = _fake_plugins(tmp_path, fail_add=True)
    conflist = {"cniVersion": "1.0.0", "name": "n1", "plugins": [{"type": "bridge", "bridge": "x"}]}
    inv = cni.Invocation("c1", "/proc/self/ns/net", "eth3")
    with pytest.raises(cni.CniError) as exc:
        await cni.add(conflist, inv, [str(path)])
    assert exc.value.code == 7 and "bad config" in str(exc.value) and "nope" in str(exc.value)
    calls = (tmp_path / "calls.log").read_text().split("\n")
    assert calls[0] == "ADD c1 eth3 /proc/self/ns/net" and calls[1] == "DEL c1 eth3"
    sent = json.loads((tmp_path / "add-stdin.json").read_text())
    assert sent["name"] == "n1" and sent["cniVersion"] == "1.0.0" and "prevResult" not in sent


async def test_chain_passes_prev_result_and_runtime_config(tmp_path: Path) -> None:
    path = _fake_plugins(tmp_path, fail_add=False)
    (path / "portmap").write_text((path / "bridge").read_text().replace("add-stdin", "pm-stdin"))
    (path / "portmap").chmod(0o755)
    conflist = {"cniVersion": "1.0.0", "name": "n2", "plugins": [
        {"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": True}}]}
    rc = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "other": 1}
    inv = cni.Invocation("c2", "/proc/self/ns/net", "eth0", runtime_config=rc)
    result = await cni.add(conflist, inv, [str(path)])
    assert result["ips"][0]["address"] == "10.213.99.5/24"
    first = json.loads((tmp_path / "add-stdin.json").read_text())
    second = json.loads((tmp_path / "pm-stdin.json").read_text())
    assert "runtimeConfig" not in first and "prevResult" not in first
    assert second["runtimeConfig"] == {"portMappings": rc["portMappings"]}  # only declared capabilities
    assert second["prevResult"]["ips"][0]["address"] == "10.213.99.5/24"
    await cni.delete(conflist, inv, [str(path)], result)
    assert json.loads((tmp_path / "del-stdin.json").read_text())["prevResult"] == result
    assert (tmp_path / "calls.log").read_text().split("\n")[-3:-1] == ["DEL c2 eth0", "DEL c2 eth0"]


async def test_missing_plugins_and_bad_options(tmp_path: Path) -> None:
    drv = CniDriver(make_context(tmp_path, owner=random_owner(), **{"cni-path": str(tmp_path / "none")}))
    with pytest.raises(Unavailable, match="containernetworking-plugins"):
        await drv.setup()
    from dockyard.model import IpamPool, Network

    with pytest.raises(InvalidArgument):
        drv.conflist_for(Network(id="a" * 64, name="x", driver="cni", options={"com.example": "1"},
                                 ipam_pools=[IpamPool(subnet="10.213.99.0/24")]))
    with pytest.raises(InvalidArgument):
        drv.conflist_for(Network(id="a" * 64, name="x", driver="cni"))  # no pool


def test_isolation_rules() -> None:
    from dockyard_network_cni import isolation

    assert [list(c)[0] for c in isolation.commands("t", ["b1"])] == ["add", "delete"]  # table removed
    cmds = isolation.commands("t", ["b2", "b1", "b3"])
    rules = [c["add"]["rule"]["expr"] for c in cmds if "rule" in c.get("add", {})]
    assert rules[0][-1] == {"accept": None}  # published ports (DNAT) pass first
    drops = {r[0]["match"]["right"]: r[1]["match"]["right"]["set"] for r in rules[1:]}
    assert drops == {"b1": ["b2", "b3"], "b2": ["b1", "b3"], "b3": ["b1", "b2"]}
