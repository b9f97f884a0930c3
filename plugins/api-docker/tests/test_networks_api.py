"""The networks front without a daemon: request bodies -> core requests, shapes, filters, CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dockyard.errors import InvalidArgument
from dockyard.model import IpamPool, Network
from dockyard_api_docker.cli.network import _filters, group
from dockyard_api_docker.filters import Filters
from dockyard_api_docker.networks import create_request, endpoint_config, network_json

CLI_BODY = {"Driver": "bridge", "Scope": "", "IPAM": {"Driver": "default", "Options": {}, "Config": [
    {"Subnet": "10.213.5.0/24", "IPRange": "10.213.5.128/25", "Gateway": "10.213.5.1",
     "AuxiliaryAddresses": {"host1": "10.213.5.5"}}]},
    "Internal": True, "Attachable": False, "Ingress": False, "ConfigOnly": False, "ConfigFrom": None,
    "Options": {"com.docker.network.driver.mtu": "1400"}, "Labels": {"cap": "1"}, "Name": "cap-net",
    "CheckDuplicate": True}


def test_cli_body() -> None:
    req = create_request(CLI_BODY)
    assert (req.name, req.driver, req.internal, req.ipam_driver) == ("cap-net", "bridge", True, "default")
    assert req.ipam_pools == [IpamPool(subnet="10.213.5.0/24", gateway="10.213.5.1", ip_range="10.213.5.128/25",
                                       aux_addresses={"host1": "10.213.5.5"})]
    assert req.options == {"com.docker.network.driver.mtu": "1400"} and req.labels == {"cap": "1"}


def test_compose_and_docker_py_bodies() -> None:
    req = create_request({"Name": "capproj_capnet", "CheckDuplicate": True, "Attachable": True,
                          "Labels": {"com.docker.compose.project": "capproj"}})
    assert req.driver == "bridge" and req.attachable and req.ipam_pools == [] and req.options == {}
    req = create_request({"Name": "py", "Driver": "bridge", "IPAM": {"Driver": "default", "Config": [
        {"Subnet": "10.213.6.0/24"}], "Options": None}, "Options": None, "EnableIPv6": False})
    assert req.ipam_pools == [IpamPool(subnet="10.213.6.0/24")] and req.ipam_options == {}


@pytest.mark.parametrize("body", [
    {}, {"Name": ""}, {"Name": 3}, {"Name": "x", "ConfigOnly": True}, {"Name": "x", "Ingress": True},
    {"Name": "x", "IPAM": {"Config": [{"Gateway": "10.0.0.1"}]}}, {"Name": "x", "Labels": ["a"]},
    {"Name": "x", "IPAM": "default"},
])
def test_bad_bodies(body: dict) -> None:
    with pytest.raises(InvalidArgument):
        create_request(body)


def test_endpoint_config() -> None:
    ep = endpoint_config({"Container": "c", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.213.5.9"},
                                                               "Links": None, "Aliases": ["capalias"]}})
    assert ep.aliases == ["capalias"] and ep.ipv4_address == "10.213.5.9"
    assert endpoint_config({"Container": "c"}).aliases == []
    with pytest.raises(InvalidArgument):
        endpoint_config({"EndpointConfig": {"Aliases": "a"}})


def test_network_json_shape() -> None:
    net = Network(id="f" * 64, name="cap-net", labels={"cap": "1"},
                  ipam_pools=[IpamPool(subnet="10.213.5.0/24", gateway="10.213.5.1")])
    out = network_json(None, net, containers=False)  # type: ignore[arg-type]
    assert out["IPAM"] == {"Driver": "default", "Options": None, "Config": [{"Subnet": "10.213.5.0/24",
                                                                           "Gateway": "10.213.5.1"}]}
    assert set(out) == {"Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal",
                        "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels"}
    assert out["ConfigFrom"] == {"Network": ""} and out["Containers"] == {} and out["Scope"] == "local"


def test_cli_filters_use_the_map_form() -> None:
    raw = _filters(("label=cap=1", "driver=bridge", "label=x"))
    assert json.loads(raw) == {"label": {"cap=1": True, "x": True}, "driver": {"bridge": True}}
    assert Filters.parse(raw, {"label", "driver"}).get("label") == ["cap=1", "x"]
    assert _filters(()) is None


@pytest.mark.parametrize("cmd", ["create", "ls", "inspect", "rm", "prune", "connect", "disconnect"])
def test_every_subcommand_answers_help(cmd: str) -> None:
    res = CliRunner().invoke(group, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output


def test_create_needs_a_subnet_for_a_gateway() -> None:
    res = CliRunner().invoke(group, ["create", "--gateway", "10.0.0.1", "n"])
    assert res.exit_code == 2 and "needs a --subnet" in res.output
