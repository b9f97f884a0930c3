"""Docker's bridge network options, validated. An unknown option is an InvalidArgument."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard_network_bridge.names import valid_ifname

OPT_NAME = "com.docker.network.bridge.name"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_IP = "com.docker.network.bridge.host_binding_ipv4"
OPT_DEFAULT = "com.docker.network.bridge.default_bridge"
OPT_MTU = "com.docker.network.driver.mtu"

KNOWN = (OPT_NAME, OPT_ICC, OPT_MASQ, OPT_HOST_IP, OPT_DEFAULT, OPT_MTU)

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def parse_bool(key: str, value: str) -> bool:
    """Go's ``strconv.ParseBool``, which dockerd uses for these options."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"option {key}: {value!r} is not a boolean")


@dataclass(frozen=True)
class BridgeOptions:
    bridge_name: str = ""  # "" = derived from the owner and network id
    icc: bool = True
    masquerade: bool = True
    host_binding_ipv4: str = ""
    default_bridge: bool = False
    mtu: int = 1500

    def to_state(self) -> dict[str, Any]:
        return {"bridge_name": self.bridge_name, "icc": self.icc, "masquerade": self.masquerade,
                "host_binding_ipv4": self.host_binding_ipv4, "default_bridge": self.default_bridge,
                "mtu": self.mtu}


def parse_mtu(key: str, value: str) -> int:
    try:
        mtu = int(value)
    except ValueError as exc:
        raise InvalidArgument(f"option {key}: {value!r} is not an integer") from exc
    if not 68 <= mtu <= 65535:
        raise InvalidArgument(f"option {key}: MTU {mtu} is outside 68..65535")
    return mtu


def parse_options(options: dict[str, str], default_mtu: int = 1500) -> BridgeOptions:
    unknown = sorted(set(options) - set(KNOWN))
    if unknown:
        raise InvalidArgument(f"bridge driver: unknown option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(KNOWN)}")
    name = options.get(OPT_NAME, "")
    if name and not valid_ifname(name):
        raise InvalidArgument(f"option {OPT_NAME}: {name!r} is not a valid interface name (max 15)")
    host_ip = options.get(OPT_HOST_IP, "")
    if host_ip:
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError as exc:
            raise InvalidArgument(f"option {OPT_HOST_IP}: {host_ip!r} is not an IPv4 address") from exc
    return BridgeOptions(
        bridge_name=name,
        icc=parse_bool(OPT_ICC, options[OPT_ICC]) if OPT_ICC in options else True,
        masquerade=parse_bool(OPT_MASQ, options[OPT_MASQ]) if OPT_MASQ in options else True,
        host_binding_ipv4="" if host_ip == "0.0.0.0" else host_ip,
        default_bridge=parse_bool(OPT_DEFAULT, options[OPT_DEFAULT]) if OPT_DEFAULT in options else False,
        mtu=parse_mtu(OPT_MTU, options[OPT_MTU]) if OPT_MTU in options else default_mtu,
    )
