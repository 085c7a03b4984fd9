"""Shamir split/combine: correctness, Vault's share format, input checks and speed."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.core.shamir import combine, gf_inv, gf_mul, split


def ref_mul(a: int, b: int) -> int:
    """Schoolbook carry-less multiply, then reduce modulo x^8 + x^4 + x^3 + x + 1."""
    product = 0
    for i in range(8):
        if (b >> i) & 1:
            product ^= a << i
    for bit in range(14, 7, -1):
        if (product >> bit) & 1:
            product ^= 0x11B << (bit - 8)
    return product


def test_gf_mul_matches_reference_for_all_pairs() -> None:
    for a in range(256):
        for b in range(256):
            assert gf_mul(a, b) == ref_mul(a, b), (a, b)


def test_gf_inv_for_all_nonzero() -> None:
    for a in range(1, 256):
        inv = gf_inv(a)
        assert 0 < inv < 256
        assert ref_mul(a, inv) == 1, a
    assert gf_inv(0) == 0


def test_known_field_values() -> None:
    assert gf_mul(2, 0x80) == 0x1B
    assert gf_mul(0x57, 0x83) == 0xC1  # FIPS-197 §4.2 example
    assert gf_inv(0x53) == 0xCA  # FIPS-197 §5.1.1 example


@st.composite
def split_params(draw: st.DrawFn) -> tuple[bytes, int, int]:
    secret = draw(st.binary(min_size=1, max_size=64))
    threshold = draw(st.integers(min_value=2, max_value=10))
    parts = draw(st.integers(min_value=threshold, max_value=10))
    return secret, parts, threshold


@settings(max_examples=150, deadline=None)
@given(params=split_params(), data=st.data())
def test_any_threshold_subset_combines(params: tuple[bytes, int, int], data: st.DataObject) -> None:
    secret, parts, threshold = params
    shares = split(secret, parts, threshold)
    assert len(shares) == parts
    assert all(len(s) == len(secret) + 1 for s in shares)
    xs = [s[-1] for s in shares]
    assert len(set(xs)) == parts and all(1 <= x <= 255 for x in xs)

    order = data.draw(st.permutations(shares))
    assert combine(order[:threshold]) == secret
    extra = data.draw(st.integers(min_value=threshold, max_value=parts))
    assert combine(order[:extra]) == secret


def test_every_subset_small_case() -> None:
    secret = b"correct horse battery staple"
    shares = split(secret, 5, 3)
    for subset in itertools.combinations(shares, 3):
        assert combine(list(subset)) == secret


@pytest.mark.parametrize(("parts", "threshold"), [(5, 3), (5, 5), (10, 4), (3, 3)])
def test_fewer_than_threshold_shares_give_another_value(parts: int, threshold: int) -> None:
    secret = bytes(range(32))
    shares = split(secret, parts, threshold)
    for k in range(2, threshold):
        # 32 random bytes collide with the secret with probability 2**-256.
        assert combine(shares[:k]) != secret


def test_vault_share_format_known_answer() -> None:
    # Degree-1 polynomial p(x) = s + c*x, hand-evaluated at x=1 and x=2.
    s, c = bytes([0x42, 0x00, 0xFF]), bytes([0x13, 0x37, 0x01])
    share1 = bytes(a ^ b for a, b in zip(s, c, strict=True)) + b"\x01"
    share2 = bytes(a ^ ref_mul(b, 2) for a, b in zip(s, c, strict=True)) + b"\x02"
    assert combine([share1, share2]) == s
    assert combine([share2, share1]) == s


def test_255_parts() -> None:
    secret = b"k" * 32
    shares = split(secret, 255, 3)
    assert sorted(s[-1] for s in shares) == list(range(1, 256))
    assert combine(shares[:3]) == secret
    assert combine(shares[-3:]) == secret
    assert combine(shares) == secret
    big = split(secret, 255, 255)
    assert combine(big) == secret


def test_duplicate_shares_rejected() -> None:
    shares = split(b"secret", 5, 3)
    with pytest.raises(ValueError, match="duplicate"):
        combine([shares[0], shares[1], shares[0]])
    # Same x-coordinate with different values is also a duplicate.
    forged = bytes([shares[0][0] ^ 1]) + shares[0][1:]
    with pytest.raises(ValueError, match="duplicate"):
        combine([shares[0], forged, shares[2]])


@pytest.mark.parametrize(
    ("secret", "parts", "threshold"),
    [
        (b"x", 2, 3),  # parts < threshold
        (b"x", 256, 3),  # parts > 255
        (b"x", 300, 300),
        (b"x", 5, 1),  # threshold < 2 (1-of-1 is the caller's special case)
        (b"x", 1, 1),
        (b"", 5, 3),  # empty secret
    ],
)
def test_split_errors(secret: bytes, parts: int, threshold: int) -> None:
    with pytest.raises(ValueError):
        split(secret, parts, threshold)


def test_combine_errors() -> None:
    shares = split(b"secret", 3, 2)
    with pytest.raises(ValueError):
        combine([])
    with pytest.raises(ValueError):
        combine([shares[0]])
    with pytest.raises(ValueError):
        combine([b"\x01", b"\x02"])  # shorter than 2 bytes
    with pytest.raises(ValueError):
        combine([shares[0], shares[1][1:]])  # length mismatch


def test_shares_are_randomised() -> None:
    secret = b"same secret"
    assert split(secret, 3, 2) != split(secret, 3, 2)


def test_performance_32_bytes_5_of_3() -> None:
    secret = bytes(range(32))
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        shares = split(secret, 5, 3)
        assert combine(shares[1:4]) == secret
        best = min(best, time.perf_counter() - start)
    assert best < 0.010, f"split+combine took {best * 1000:.2f} ms"
