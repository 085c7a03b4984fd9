"""Addresses and CIDR blocks as Vault renders them, shared by core and the auth methods."""

from __future__ import annotations

import ipaddress


def render_cidr(text: str) -> str:
    """An address or block (``parseutil.ParseAddrs``) printed as go-sockaddr does; ValueError if neither.

    A full-length block (``/32``, ``/128``) is printed as the bare address.
    """
    iface = ipaddress.ip_interface(text)
    full = iface.network.prefixlen == iface.network.max_prefixlen
    return str(iface.ip) if full else str(iface)
