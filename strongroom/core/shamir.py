"""Shamir secret sharing over GF(2^8), in Vault's share format.

Why: the key that unlocks the barrier is split among operators so that no
single person can unseal, and ``threshold`` of them together can. A share is
the split bytes followed by one trailing x-coordinate byte (1..255), exactly
as Vault's ``shamir`` package produces, so shares move between the two.

The field is the AES field (x^8 + x^4 + x^3 + x + 1). Arithmetic uses no
lookup table indexed by secret bytes (CVE-2023-25000 / HCSEC-2023-10):
multiplication is shift-and-add with all-ones/all-zeros masks and inversion is
exponentiation to the 254th power, so the sequence of operations does not
depend on the values involved. Python gives no hard constant-time guarantee,
but there are no secret-dependent branches or memory lookups here.

Secret bytes are processed in parallel: the whole secret is packed into one
integer with one byte per 8-bit lane, and the lane-wise operations below never
carry between lanes.

Note: ``split`` requires ``threshold >= 2``. Vault's *init* accepts 1 share /
threshold 1 by not splitting at all (the single share is the key itself);
that special case belongs to the caller.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence

__all__ = ["combine", "gf_inv", "gf_mul", "split"]

# Low byte of the reduction polynomial x^8 + x^4 + x^3 + x + 1.
_POLY = 0x1B


def gf_mul(a: int, b: int) -> int:
    """Multiply two field elements (0..255) without tables or data-dependent branches."""
    r = 0
    for i in range(7, -1, -1):
        r = ((-((b >> i) & 1) & a) ^ (-(r >> 7) & _POLY) ^ (r << 1)) & 0xFF
    return r


def gf_inv(a: int) -> int:
    """Multiplicative inverse as a^254 (a fixed addition chain); gf_inv(0) is 0."""
    b = gf_mul(a, a)  # a^2
    c = gf_mul(a, b)  # a^3
    b = gf_mul(c, c)  # a^6
    b = gf_mul(b, b)  # a^12
    c = gf_mul(b, c)  # a^15
    b = gf_mul(b, b)  # a^24
    b = gf_mul(b, b)  # a^48
    b = gf_mul(b, c)  # a^63
    b = gf_mul(b, b)  # a^126
    b = gf_mul(a, b)  # a^127
    return gf_mul(b, b)  # a^254


class _Lanes:
    """Masks for ``n`` packed bytes: each field element lives in its own 8-bit lane."""

    __slots__ = ("full", "low", "seven")

    def __init__(self, n: int) -> None:
        self.low = int.from_bytes(b"\x01" * n, "big")
        self.seven = self.low * 0x7F
        self.full = self.low * 0xFF

    def mul(self, v: int, s: int) -> int:
        """Multiply every lane of ``v`` by the field element ``s`` (masked, branch-free)."""
        low, seven, full = self.low, self.seven, self.full
        acc = 0
        for i in range(8):
            acc ^= v & (-((s >> i) & 1) & full)
            # xtime in every lane: shift left inside the lane, reduce lanes whose top bit was set.
            v = ((v & seven) << 1) ^ (((v >> 7) & low) * _POLY)
        return acc


def split(secret: bytes, parts: int, threshold: int) -> list[bytes]:
    """Split ``secret`` into ``parts`` shares of which any ``threshold`` rebuild it.

    Each share is ``len(secret) + 1`` bytes: the polynomial values, then the
    x-coordinate. x-coordinates are distinct, random and never 0.
    """
    if parts < threshold:
        raise ValueError("parts cannot be less than threshold")
    if parts > 255:
        raise ValueError("parts cannot exceed 255")
    if threshold < 2:
        raise ValueError("threshold must be at least 2")
    if not secret:
        raise ValueError("cannot split an empty secret")

    n = len(secret)
    lanes = _Lanes(n)
    # coeffs[0] is the intercept (the secret); the rest are uniformly random, the
    # top one included (a zero top coefficient is part of the uniform distribution).
    coeffs = [int.from_bytes(secret, "big")]
    coeffs.extend(int.from_bytes(secrets.token_bytes(n), "big") for _ in range(threshold - 1))
    high_first = coeffs[::-1]
    xs = secrets.SystemRandom().sample(range(1, 256), parts)

    shares: list[bytes] = []
    for x in xs:
        y = high_first[0]
        for c in high_first[1:]:  # Horner's rule
            y = lanes.mul(y, x) ^ c
        shares.append(y.to_bytes(n, "big") + bytes((x,)))
    return shares


def combine(shares: Sequence[bytes]) -> bytes:
    """Rebuild the secret from ``threshold`` or more shares made by ``split``.

    Too few shares (but at least two) give a wrong value rather than an error:
    shares carry no threshold, so the caller must know how many it needs.
    """
    if len(shares) < 2:
        raise ValueError("less than two shares cannot be used to reconstruct the secret")
    size = len(shares[0])
    if size < 2:
        raise ValueError("shares must be at least two bytes long")
    for share in shares:
        if len(share) != size:
            raise ValueError("all shares must be the same length")

    # Duplicate x-coordinates make the interpolation meaningless. Check every pair
    # without an early exit, then decide once.
    tails = [bytes(share[-1:]) for share in shares]
    duplicate = False
    for i in range(len(tails)):
        for j in range(i + 1, len(tails)):
            duplicate |= hmac.compare_digest(tails[i], tails[j])
    if duplicate:
        raise ValueError("duplicate share detected")

    xs = [share[-1] for share in shares]
    lanes = _Lanes(size - 1)
    result = 0
    for i, xi in enumerate(xs):
        # Lagrange basis polynomial for point i evaluated at 0: prod x_j / prod (x_i - x_j),
        # where subtraction is XOR in GF(2^8). One inversion per share.
        num = den = 1
        for j, xj in enumerate(xs):
            if j != i:
                num = gf_mul(num, xj)
                den = gf_mul(den, xi ^ xj)
        basis = gf_mul(num, gf_inv(den))
        result ^= lanes.mul(int.from_bytes(shares[i][:-1], "big"), basis)
    return result.to_bytes(size - 1, "big")
