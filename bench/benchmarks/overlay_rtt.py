"""The overlay's round-trip time alone (issue 16's goal: ≤ 1.2× the underlay), with both of the
driver's data paths, on the two netns hosts of ``overlay.py`` (engines on one etcd, the hosts'
veths to the netns driver's bridge as the underlay, MTU 1500; the overlay's is 1450).

Four paths, from h1 to h2, measured in the same run:

- subject: container to container over an overlay network as made by default (``macvlan``
  data path: the containers' interfaces are macvlan children of the VXLAN device; with the
  driver's eBPF fast path, which encapsulates and decapsulates in tcx programs);
- peer: the same over a network made with ``-o dockyard.overlay.fastpath=off`` (every frame
  through the kernel's VXLAN device);
- peer: the same over a network made with ``-o dockyard.overlay.datapath=bridge``
  (libnetwork's layout: a veth per container and a bridge per network on each host);
- peer: host to host over the underlay (h1's ``eth0`` to h2's).

Method: ``busybox ping -c 200 -i 0.002`` (busybox prints each reply's RTT in ms with three
decimals: 1 µs resolution), ``BENCH_OVERLAY_RTT_ROUNDS`` rounds (default 10) of one run per
path, in an order rotated each round so that load from elsewhere on the machine falls on every
path alike. Figures are of every reply pooled over the rounds (the first reply of each run,
with its ARP, dropped): the rows' median, mean, min and max; the goal's text adds the p90, the
median of the per-round ratios (each round's overlay median over the same round's underlay
median: paired in time, so a change of load between rounds cancels out) and the load average
before and after. The RTTs are not unimodal on a loaded machine (a low tail when the CPU was
busy, not idle, at the reply), which is why the paired ratio is given too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import statistics
from pathlib import Path
from typing import Any

from harness import Context, Result, add_ratios, fill, sample_stats

BENCH = "overlay_rtt"
ROUNDS = int(os.environ.get("BENCH_OVERLAY_RTT_ROUNDS", "10"))
COUNT = 200


def _overlay() -> Any:
    """The sibling ``overlay.py`` (its hosts, its ping and its goal)."""
    spec = importlib.util.spec_from_file_location("bench_overlay_for_rtt", Path(__file__).with_name("overlay.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _measure(ov: Any, samples: dict[str, list[float]], loads: list[str], paired: dict[str, list[float]]) -> Any:
    def body(ctx: Context, rows: dict[str, Result], h1: Any, h2: Any) -> None:
        h1.docker("network", "create", "-d", "overlay", "--subnet", "10.77.0.0/24", "ov")
        h1.docker("network", "create", "-d", "overlay", "-o", "dockyard.overlay.fastpath=off",
                  "--subnet", "10.78.0.0/24", "ovk")
        h1.docker("network", "create", "-d", "overlay", "-o", "dockyard.overlay.datapath=bridge",
                  "--subnet", "10.79.0.0/24", "ovb")
        for host, name, net, ip in ((h1, "c1", "ov", "10.77.0.10"), (h2, "c2", "ov", "10.77.0.20"),
                                    (h1, "k1", "ovk", "10.78.0.10"), (h2, "k2", "ovk", "10.78.0.20"),
                                    (h1, "b1", "ovb", "10.79.0.10"), (h2, "b2", "ovb", "10.79.0.20")):
            host.docker("run", "-d", "--name", name, "--network", net, "--ip", ip, "busybox", "sleep", "3600")

        def ns(host: Any, name: str) -> str:
            return f"/proc/{int(host.docker('inspect', '-f', '{{.State.Pid}}', name).stdout.strip())}/ns/net"

        paths = {"macvlan": (ns(h1, "c1"), "10.77.0.20"), "kernel": (ns(h1, "k1"), "10.78.0.20"),
                 "bridge": (ns(h1, "b1"), "10.79.0.20"),
                 "underlay": (f"/run/netns/{h1.host.extra['netns']}", h2.address)}
        rows["macvlan"].command = f"nsenter --net=/proc/PID(c1)/ns/net busybox ping -c {COUNT} -i 0.002 10.77.0.20"
        rows["kernel"].command = f"nsenter --net=/proc/PID(k1)/ns/net busybox ping -c {COUNT} -i 0.002 10.78.0.20"
        rows["bridge"].command = f"nsenter --net=/proc/PID(b1)/ns/net busybox ping -c {COUNT} -i 0.002 10.79.0.20"
        rows["underlay"].command = f"nsenter --net=/run/netns/H1 busybox ping -c {COUNT} -i 0.002 {h2.address}"
        loads.append(ov.loadavg())
        keys = list(paths)
        for i in range(ROUNDS):
            medians = {}
            for key in keys[i % len(keys):] + keys[:i % len(keys)]:
                got = ov.ping_rtts(*paths[key], COUNT)
                samples[key] += got
                medians[key] = statistics.median(got)
            for key in ("macvlan", "kernel", "bridge"):
                paired[key].append(medians[key] / medians["underlay"])
            ctx.log(f"  round {i + 1}/{ROUNDS}: median " + ", ".join(
                f"{k} {statistics.median(v) * 1e6:.0f} µs" for k, v in samples.items()) + f" (load {ov.loadavg()})")
        loads.append(ov.loadavg())
        for host, names in ((h1, ("c1", "k1", "b1")), (h2, ("c2", "k2", "b2"))):
            host.docker("rm", "-f", *names)
        h1.docker("network", "rm", "ov", "ovk", "ovb")

    return body


def run(ctx: Context) -> list[Result]:
    ov = _overlay()
    rows = {
        "macvlan": Result(benchmark=BENCH, name="ping RTT, overlay container to container (as made by default: "
                          "macvlan data path with the eBPF fast path)", command=""),
        "kernel": Result(benchmark=BENCH, name="ping RTT, overlay container to container (macvlan data path, "
                         "fast path off: the kernel's VXLAN device)", role="peer", command=""),
        "bridge": Result(benchmark=BENCH, name="ping RTT, overlay container to container (bridge data path: "
                         "veth + bridge)", role="peer", command=""),
        "underlay": Result(benchmark=BENCH, name="ping RTT, underlay host to host", role="peer", command=""),
    }
    samples: dict[str, list[float]] = {k: [] for k in rows}
    loads: list[str] = []
    paired: dict[str, list[float]] = {"macvlan": [], "kernel": [], "bridge": []}
    why = ov.unmet(ctx, ("nsenter", "busybox", "docker", "etcd"))
    if not why:
        try:
            asyncio.run(ov.measure(ctx, rows, _measure(ov, samples, loads, paired)))
        except Exception as exc:  # noqa: BLE001 - reported as not measured, with the reason
            why = f"{type(exc).__name__}: {exc}"
    for key, row in rows.items():
        if why:
            row.error = why
        else:
            fill(row, sample_stats(samples[key]))
    out = list(rows.values())
    add_ratios(out)
    if not why:
        subject, underlay = rows["macvlan"], rows["underlay"]
        goal = ov.rtt_goal(subject, underlay, {"subject": samples["macvlan"], "peer": samples["underlay"]})
        bridge, kernel = rows["bridge"], rows["kernel"]
        goal.detail += (f"; per-round ratio median {statistics.median(paired['macvlan']):.2f}× "
                        f"(range {min(paired['macvlan']):.2f}–{max(paired['macvlan']):.2f}); "
                        f"fast path off (kernel VXLAN) median {kernel.median_ms * 1000:.0f} µs "  # type: ignore[operator]
                        f"({kernel.median_ms / underlay.median_ms:.2f}×, per round "  # type: ignore[operator]
                        f"{statistics.median(paired['kernel']):.2f}×), p90 {ov.p90(samples['kernel']) * 1e6:.0f} µs; "
                        f"bridge data path median {bridge.median_ms * 1000:.0f} µs "  # type: ignore[operator]
                        f"({bridge.median_ms / underlay.median_ms:.2f}×, per round "  # type: ignore[operator]
                        f"{statistics.median(paired['bridge']):.2f}×), p90 {ov.p90(samples['bridge']) * 1e6:.0f} µs; "
                        f"{len(samples['macvlan'])} replies per path; load average {loads[0]} before, {loads[-1]} after")
        subject.goals.append(goal)
    return out
