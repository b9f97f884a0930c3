"""The blocking rtnetlink channel, checked against pyroute2's own view of a throwaway namespace."""

from __future__ import annotations

import errno

import pytest
from pyroute2 import IPRoute, netns

from dockyard_network_bridge.netlink import in_netns
from dockyard_network_bridge.rtnl import NetlinkError, Rtnl
from dockyard_plugin_sdk.conformance.network import random_owner


@pytest.fixture
def ns_path():
    name = f"{random_owner()}-rtnl"
    netns.create(name)
    yield f"/run/netns/{name}"
    netns.remove(name)


def test_requests_match_what_pyroute2_sees(ns_path):
    def work():
        with Rtnl() as rt:
            assert rt.link_index("lo") == 1
            assert rt.link_index("no-such-link") is None
            rt.set_up(1)
            with pytest.raises(NetlinkError) as info:
                rt.delete("no-such-link")
            assert info.value.code == errno.ENODEV
            rt.add_address(1, "192.0.2.7/24")
            with pytest.raises(NetlinkError) as info:  # NLM_F_EXCL: a second add is refused
                rt.add_address(1, "192.0.2.7/24")
            assert info.value.code == errno.EEXIST
            rt.add_address(1, "2001:db8::7/64")
        with IPRoute() as ipr:
            (lo,) = ipr.link("get", index=1)
            v4 = [a for a in ipr.addr("dump", index=1) if a.get("address") == "192.0.2.7"]
            v6 = [a for a in ipr.addr("dump", index=1) if a.get("address") == "2001:db8::7"]
            return bool(lo["flags"] & 1), v4, v6

    up, v4, v6 = in_netns(ns_path, work)
    assert up
    assert len(v4) == 1 and v4[0]["prefixlen"] == 24
    assert v4[0].get_attr("IFA_BROADCAST") == "192.0.2.255"  # as docker's (vishvananda/netlink) addresses
    assert len(v6) == 1 and v6[0]["prefixlen"] == 64


def test_the_channel_stays_usable_after_errors(ns_path):
    """A refused request consumes its own error; the next request gets its own answer."""
    def work():
        with Rtnl() as rt:
            for _ in range(3):
                with pytest.raises(NetlinkError):
                    rt.delete("no-such-link")
                assert rt.link_index("lo") == 1
    in_netns(ns_path, work)
