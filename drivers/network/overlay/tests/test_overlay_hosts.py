"""The overlay across two netns hosts and a real etcd, through the real docker CLI."""

from __future__ import annotations

import re
import time

import pytest

from dockyard_plugin_sdk.testing import wait_for

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

OUR_LINK = re.compile(r"^dy[0-9a-f]{6}[oxe][0-9a-f]+$")  # the overlay's bridge, VXLAN device, veths
HTTPD = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def _overlay_links(cluster, host) -> list[str]:
    return [n for n in cluster.links(host) if OUR_LINK.match(n)]


def _resolves(host, net: str, name: str) -> bool:
    out = host.docker("run", "--rm", "--network", net, "busybox", "nslookup", name, check=False)
    return out.returncode == 0 and "Address" in out.stdout.split("Name:", 1)[-1]


async def test_containers_on_two_hosts_talk_by_name_and_alias(overlay_cluster):
    h1, h2 = overlay_cluster.hosts
    h1.docker("network", "create", "-d", "overlay", "--subnet", "10.33.0.0/24", "ov1")
    # the network is cluster-wide: the other engine lists it, same ID, scope global
    net_id = h1.docker("network", "inspect", "-f", "{{.Id}}", "ov1").stdout.strip()
    wait_for(lambda: h2.docker("network", "inspect", "-f", "{{.Id}} {{.Scope}}", "ov1", check=False).stdout.strip()
             == f"{net_id} global", 5, "ov1 on h2")
    assert not _overlay_links(overlay_cluster, h1), "built before any container joined"
    h2.docker("run", "-d", "--name", "web", "--network", "ov1", "--network-alias", "site", "busybox",
              "sh", "-c", HTTPD)
    h1.docker("run", "-d", "--name", "client", "--network", "ov1", "busybox", "sleep", "600")
    page = h1.docker("exec", "client", "wget", "-qO-", "http://web/").stdout
    assert page.startswith("hello-from-"), page
    assert h1.docker("exec", "client", "wget", "-qO-", "http://site/").stdout == page
    # ping both ways; the MTU leaves room for the VXLAN header
    h1.docker("exec", "client", "ping", "-c", "1", "-W", "3", "web")
    h2.docker("exec", "web", "ping", "-c", "1", "-W", "3", "client")
    assert h2.docker("exec", "web", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1450"
    web_ip = h2.docker("inspect", "-f", "{{.NetworkSettings.Networks.ov1.IPAddress}}", "web").stdout.strip()
    client_ip = h1.docker("inspect", "-f", "{{.NetworkSettings.Networks.ov1.IPAddress}}", "client").stdout.strip()
    assert web_ip != client_ip and web_ip.startswith("10.33.0.")
    # after removal the name stops resolving on h1 and the address is free again
    h2.docker("rm", "-f", "web")
    t0 = time.monotonic()
    wait_for(lambda: h1.docker("exec", "client", "nslookup", "web", check=False).returncode != 0, 5,
             "web to stop resolving on h1")
    assert time.monotonic() - t0 < 3
    h1.docker("run", "--rm", "--network", "ov1", "--ip", web_ip, "busybox", "true")
    # the overlay on h1 disappears with its last local container; h2 has none left
    assert _overlay_links(overlay_cluster, h1)
    h1.docker("rm", "-f", "client")
    assert not _overlay_links(overlay_cluster, h1)
    assert not _overlay_links(overlay_cluster, h2)
    h2.docker("network", "rm", "ov1")
    wait_for(lambda: h1.docker("network", "inspect", "ov1", check=False).returncode != 0, 5, "ov1 gone from h1")
