"""Addresses and CIDR blocks as Vault renders them, shared by core and the auth methods."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def render_cidr(text: str) -> str:
    """An address or block (``parseutil.ParseAddrs``) printed as go-sockaddr does; ValueError if neither.

    A full-length block (``/32``, ``/128``) is printed as the bare address.
    """
    iface = ipaddress.ip_interface(text)
    full = iface.network.prefixlen == iface.network.max_prefixlen
    return str(iface.ip) if full else str(iface)


def networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for cidr in cidrs:
        try:
            nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            continue  # an unparsable block never matches
    return nets


def check_cidrs(remote_addr: str, cidrs: Iterable[str]) -> bool:
    """Whether ``remote_addr`` may act from where it is: True with no blocks, else inside one.

    Token bindings (core) and login restrictions (auth methods) both use this.

    An unknown or unparsable address is refused when blocks are set; an IPv4-mapped IPv6
    address is matched as the IPv4 address it carries.
    """
    blocks = [c for c in cidrs if c.strip()]
    if not blocks:
        return True
    nets = networks(blocks)
    try:
        addr = ipaddress.ip_address(remote_addr.strip().strip("[]"))
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [addr]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        candidates.append(addr.ipv4_mapped)
    return any(a.version == n.version and a in n for a in candidates for n in nets)
