"""Vault-style duration parsing, shared by the config loader and API field coercion.

Vault accepts TTLs as integer seconds (``3600``, ``"3600"``) or as Go duration strings
(``"1h"``, ``"1h30m"``, ``"2160h0m0s"``, ``"1.5h"``, ``"500ms"``) and, through
go-secure-stdlib's ``parseutil``, a ``d`` (day) suffix. Results are whole seconds,
truncated like ``time.Duration / time.Second``. Negative durations are rejected here:
every caller (lease TTLs, wrap TTLs, tidy intervals) treats them as an error.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["MAX_SECONDS", "format_duration", "parse_duration"]

# Go's time.Duration is an int64 of nanoseconds; anything longer overflows there too.
MAX_SECONDS = (2**63 - 1) // 1_000_000_000

_UNIT_NANOS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
}

# One "<number><unit>" term; the whole string must be a sequence of these.
_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_INT = re.compile(r"[+]?\d+")
_SIMPLE = re.compile(r"(\d{1,15})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | float) -> int:
    """Return ``value`` as whole seconds, or raise ``ValueError``.

    Accepted: non-negative ints and finite floats (JSON numbers are seconds), integer
    strings, Go duration strings and the bare string ``"0"``. The empty string means
    "unset" in Vault and parses as 0. Booleans, negative values, unit-less decimals
    (``"1.5"``) and values beyond Go's ``time.Duration`` range are rejected.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected seconds or a duration string")
    if isinstance(value, int):
        return _checked(value, value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {value!r}")
        return _checked(int(value) if value >= 0 else -1, value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: expected seconds or a duration string")

    text = value.strip()
    if text == "":
        return 0
    if text.startswith("-"):
        raise ValueError(f"invalid duration {value!r}: negative durations are not allowed")
    if _INT.fullmatch(text):
        if len(text) > 30:  # far beyond MAX_SECONDS; avoid huge int conversions
            raise ValueError(f"invalid duration {value!r}: out of range")
        return _checked(int(text), value)

    simple = _SIMPLE.fullmatch(text)
    if simple is not None:  # "1h", "90m", "768h", "30s": the common case, without Fractions
        return _checked(int(simple.group(1)) * _UNIT_SECONDS[simple.group(2)], value)

    body = text[1:] if text.startswith("+") else text
    nanos = Fraction(0)
    pos = 0
    for match in _TERM.finditer(body):
        if match.start() != pos:
            break
        number, unit = match.group(1), match.group(2)
        if len(number) > 40:
            raise ValueError(f"invalid duration {value!r}: out of range")
        nanos += Fraction(number) * _UNIT_NANOS[unit]
        pos = match.end()
    if pos == 0 or pos != len(body):
        raise ValueError(f"invalid duration {value!r}: use seconds or a form like '90s', '1h30m', '768h'")
    return _checked(int(nanos // 1_000_000_000), value)


def _checked(seconds: int, original: object) -> int:
    if seconds < 0:
        raise ValueError(f"invalid duration {original!r}: negative durations are not allowed")
    if seconds > MAX_SECONDS:
        raise ValueError(f"invalid duration {original!r}: out of range")
    return seconds


def format_duration(seconds: int) -> str:
    """Render seconds the way Go prints a ``time.Duration`` (``"768h0m0s"``, ``"1m30s"``, ``"0s"``).

    Vault shows TTLs in this form (for example ``sys/mounts`` tune output and the CLI), so
    round-tripping through :func:`parse_duration` is exact.
    """
    if seconds < 0:
        raise ValueError("negative duration")
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
