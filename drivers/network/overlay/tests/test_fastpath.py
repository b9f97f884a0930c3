"""The eBPF fast path's loader against the real kernel: the object built from its source, read,
verified and attached to tcx hooks of devices in a scratch network namespace, its maps written
and read, and everything gone with the file descriptors."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import Unavailable
from dockyard_network_overlay import fastpath as F

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("clang") is None,
                                reason="needs root and clang (make install installs it)")


@pytest.fixture
def scratch_ns() -> Iterator[str]:
    """A scratch network namespace with a veth pair (u0/u1) and a VXLAN device (v0)."""
    from pyroute2 import IPRoute

    from dockyard_provision_netns import net

    name = f"dyfp{uuid.uuid4().hex[:8]}"
    path = net.create_netns(name)
    try:
        def links() -> None:
            with IPRoute() as ipr:
                ipr.link("add", ifname="u0", kind="veth", peer="u1")
                ipr.link("add", ifname="v0", kind="vxlan", vxlan_id=4242, vxlan_port=4789, vxlan_local="10.9.0.1")

        net.in_netns(name, links)
        yield str(path)
    finally:
        net.remove_netns(name)


def test_the_object_builds_once_and_names_only_known_maps(tmp_path: Path) -> None:
    obj = F.build_object(tmp_path)
    assert F.build_object(tmp_path) == obj and len(list(tmp_path.iterdir())) == 1  # cached by the source's hash
    programs = F.read_object(obj.read_bytes())
    assert set(programs) == set(F.PROGRAMS)
    assert {m for p in programs.values() for _, m in p.relocations} == set(F.MAPS)
    bad = tmp_path / "bad.c"
    bad.write_text("int broken(")
    with pytest.raises(Unavailable, match="building the overlay fast path failed"):
        F.build_object(tmp_path / "b", source=bad)


def test_programs_attach_to_tcx_and_leave_with_their_fds(tmp_path: Path, scratch_ns: str) -> None:
    from dockyard.netns import run_in

    def index(name: str) -> int:
        return socket.if_nametoindex(name)

    fp = F.FastPath.create_maps()
    try:
        fp.load(F.build_object(tmp_path))
        u0, v0 = run_in(scratch_ns, lambda: (index("u0"), index("v0")))
        run_in(scratch_ns, lambda: (fp.attach(u0, ingress=True), fp.attach(v0, ingress=False)))
        assert run_in(scratch_ns, lambda: (F.attached_programs(u0, True), F.attached_programs(v0, False),
                                           F.attached_programs(v0, True))) == (1, 1, 0)
        fp.set_network(4242, v0, "10.9.0.1")
        fp.set_peer(v0, "02:42:0a:09:00:02", "10.9.0.2", "10.9.0.1", 4242, u0)
        key = struct.pack("<I", v0) + bytes.fromhex("02420a090002") + b"\0\0"
        value = F.map_lookup(fp.maps["dy_peers"], key, 16)
        assert value == socket.inet_aton("10.9.0.2") + socket.inet_aton("10.9.0.1") + struct.pack("<II", 4242, u0)
        fp.del_peer(v0, "02:42:0a:09:00:02")
        assert F.map_lookup(fp.maps["dy_peers"], key, 16) is None
        assert fp.stats() == (0, 0)
        fp.detach(v0, ingress=False)
        assert run_in(scratch_ns, lambda: F.attached_programs(v0, False)) == 0
    finally:
        fp.close()
    assert run_in(scratch_ns, lambda: F.attached_programs(u0, True)) == 0
    assert not fp.maps and not fp.programs and not fp.links
