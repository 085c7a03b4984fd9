"""Lease TTL arithmetic, as Vault's ``framework.CalculateTTL`` does it.

Every token and lease TTL goes through :func:`calculate_ttl`: the ceiling starts
at the mount's (or the server's) ``max_lease_ttl``, is lowered by a backend/role
maximum and by an explicit maximum; a periodic lease gets its period (capped,
and only ``explicit_max_ttl`` ends it); anything else gets the increment, else
the backend TTL, else the mount default, cut off at ``start + ceiling``. The
warnings are Vault's text, byte for byte, with Vault's compact durations
(``"768h"``, ``"1h30s"``).

Pure: no I/O, and ``now`` can be passed in, so it is table-tested.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from strongroom.logical.errors import UserError

__all__ = ["TTLError", "TTLSystemView", "calculate_ttl", "go_duration", "human_duration"]


class TTLSystemView(Protocol):
    """The two numbers a TTL depends on (a mount's tune, else the server's)."""

    def default_lease_ttl(self) -> int: ...

    def max_lease_ttl(self) -> int: ...


class TTLError(UserError):
    """The TTL cannot be computed (no ceiling left, or past the maximum)."""


def go_duration(seconds: int) -> str:
    """Whole seconds as Go's ``time.Duration.String()`` prints them (``"768h0m0s"``)."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def human_duration(seconds: int) -> str:
    """Vault's ``humanDuration``: Go's form without zero elements (``"768h"``, ``"1h30s"``)."""
    if seconds == 0:
        return "0s"
    text = go_duration(seconds)
    if text.endswith("m0s"):
        text = text[:-2]
    idx = text.find("h0m")
    if idx > 0:
        text = text[: idx + 1] + text[idx + 3 :]
    return text


def calculate_ttl(
    system: TTLSystemView,
    increment: int = 0,
    backend_ttl: int = 0,
    period: int = 0,
    backend_max_ttl: int = 0,
    explicit_max_ttl: int = 0,
    start_time: float = 0.0,
    *,
    now: float | None = None,
) -> tuple[int, list[str]]:
    """Return ``(ttl, warnings)`` for a lease issued at ``start_time`` (0: now).

    Arguments are whole seconds, in the order of Vault's ``CalculateTTL``. Raises
    :class:`TTLError` when no ceiling is left or the lease is past its maximum.
    """
    now_s = math.floor(time.time() if now is None else now)
    start_s = now_s if not start_time else math.floor(start_time)
    warnings: list[str] = []

    max_ttl = system.max_lease_ttl()
    if 0 < backend_max_ttl < max_ttl:
        max_ttl = backend_max_ttl
    if 0 < explicit_max_ttl < max_ttl:
        max_ttl = explicit_max_ttl
    if max_ttl <= 0:
        raise TTLError("max TTL must be greater than zero")

    max_valid_time: int | None = None
    if period > 0:
        if period > max_ttl:
            warnings.append(
                f'period of "{human_duration(period)}" exceeded the effective max_ttl of '
                f'"{human_duration(max_ttl)}"; period value is capped accordingly'
            )
            period = max_ttl
        ttl = period
        if explicit_max_ttl > 0:
            max_valid_time = start_s + explicit_max_ttl
    else:
        if increment > 0:
            ttl = increment
        elif backend_ttl > 0:
            ttl = backend_ttl
        else:
            ttl = system.default_lease_ttl()
        max_valid_time = start_s + max_ttl

    if max_valid_time is not None:
        max_valid_ttl = max_valid_time - now_s
        if max_valid_ttl <= 0:
            raise TTLError("past the max TTL, cannot renew")
        if max_valid_ttl < ttl:
            warnings.append(
                f'TTL of "{human_duration(ttl)}" exceeded the effective max_ttl of '
                f'"{human_duration(max_valid_ttl)}"; TTL value is capped accordingly'
            )
            ttl = max_valid_ttl
    return ttl, warnings
