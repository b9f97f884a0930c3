"""IPv6 on an overlay across two netns hosts and a real etcd, through the real docker CLI:
addresses from the cluster-wide IPAM, permanent NDP entries as for ARP, AAAA answers, ping6."""

from __future__ import annotations

import ipaddress
import json

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

NUD_PERMANENT, AF_INET6 = 0x80, 10


def _addresses(host, container: str, network: str) -> tuple[str, str]:  # noqa: ANN001
    doc = json.loads(host.docker("inspect", container).stdout)[0]["NetworkSettings"]["Networks"][network]
    return doc["IPAddress"], doc["GlobalIPv6Address"]


@pytest.mark.parametrize("datapath", ["macvlan", "bridge"])
async def test_an_ipv6_overlay_pings_and_resolves_across_hosts(overlay_cluster, datapath):
    h1, h2 = overlay_cluster.hosts
    n = 1 if datapath == "macvlan" else 2
    v4, v6 = f"10.39.{n}.0/24", f"fd00:39:{n}::/64"
    name, a, b = f"ov6{datapath[0]}", f"six{n}a", f"six{n}b"
    h1.docker("network", "create", "-d", "overlay", "--ipv6", "--subnet", v4, "--subnet", v6,
              "-o", f"dockyard.overlay.datapath={datapath}", name)
    try:
        inspect = json.loads(h2.docker("network", "inspect", name).stdout)[0]
        assert inspect["EnableIPv6"] is True
        assert sorted(c["Subnet"] for c in inspect["IPAM"]["Config"]) == sorted([v4, v6])
        h1.docker("run", "-d", "--name", a, "--network", name, "busybox", "sleep", "300")
        h2.docker("run", "-d", "--name", b, "--network", name, "busybox", "sleep", "300")
        (_a4, a6), (b4, b6) = _addresses(h1, a, name), _addresses(h2, b, name)
        assert a6 != b6 and all(ipaddress.ip_address(x) in ipaddress.ip_network(v6) for x in (a6, b6)), (a6, b6)
        h1.docker("exec", a, "ping", "-c", "1", "-W", "3", b6)
        h2.docker("exec", b, "ping", "-c", "1", "-W", "3", a6)
        h1.docker("exec", a, "ping", "-c", "1", "-W", "3", b4)  # IPv4 beside it

        def ndp(ns) -> dict[str, int]:  # noqa: ANN001
            out = {}
            for link in ns.get_links():
                if link.get_attr("IFLA_LINKINFO") is not None and \
                        link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "vxlan":
                    for m in ns.get_neighbours(ifindex=link["index"], family=AF_INET6):
                        out[str(m.get_attr("NDA_DST"))] = m["state"]
            return out

        entries = overlay_cluster.in_ns(h1, ndp)
        assert entries.get(b6, 0) & NUD_PERMANENT, entries  # programmed from the store, as ARP
        answer = h1.docker("exec", a, "nslookup", "-type=AAAA", b).stdout
        assert b6 in answer, answer
        h2.docker("rm", "-f", b)
        entries = overlay_cluster.in_ns(h1, ndp)
        assert b6 not in entries, entries  # withdrawn with the endpoint
        h1.docker("rm", "-f", a)
    finally:
        for h, c in ((h1, a), (h2, b)):
            h.docker("rm", "-f", c, check=False)
        h1.docker("network", "rm", name)


async def test_an_ipv6_overlay_takes_one_subnet_per_family(overlay_cluster):
    h1, _h2 = overlay_cluster.hosts
    out = h1.docker("network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.39.9.0/24",
                    "--subnet", "fd00:39:9::/64", "--subnet", "fd00:39:a::/64", "ov6x", check=False)
    assert out.returncode != 0 and "one IPv6 subnet" in out.stderr, out.stderr
    out = h1.docker("network", "create", "-d", "overlay", "--subnet", "fd00:39:9::/64", "ov6y", check=False)
    assert out.returncode != 0 and "needs --ipv6" in out.stderr, out.stderr
    listed = h1.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "ov6x" not in listed and "ov6y" not in listed
