"""The RSA key pool: keys are handed out once, refilled in the background, dropped on close."""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric import rsa

from strongroom.engines.pki.keypool import RsaKeyPool


async def test_keys_are_fresh_unique_and_refilled() -> None:
    pool = RsaKeyPool(target=3)
    first = await pool.take(2048)  # nothing spare yet: generated now, and a refill starts
    assert isinstance(first, rsa.RSAPrivateKey) and first.key_size == 2048
    for _ in range(200):  # bounded wait for the background refill (keygen is ~30 ms each)
        if pool.ready(2048) == 3:
            break
        await asyncio.sleep(0.05)
    assert pool.ready(2048) == 3
    taken = [await pool.take(2048) for _ in range(3)]
    numbers = {k.private_numbers().p for k in [first, *taken]}
    assert len(numbers) == 4  # every key handed out once, none repeated
    await pool.close()
    assert pool.ready(2048) == 0


async def test_an_unused_size_costs_nothing() -> None:
    pool = RsaKeyPool(target=2)
    assert pool.ready(4096) == 0
    await pool.close()
