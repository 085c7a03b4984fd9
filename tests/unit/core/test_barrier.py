"""The barrier: encryption at rest, AAD binding, sealing, rotation, rekey and transactions."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from strongroom.core.barrier import KEYRING_PATH, Barrier, BarrierError, decrypt_with, encrypt_with
from strongroom.logical.errors import NotInitialized, Sealed, StrongroomError
from strongroom.logical.storage import InmemStorage, Storage

ROOT = bytes(range(32))
SECRET = b"super-secret-value-1234567890"


async def new_barrier(physical: InmemStorage | None = None) -> tuple[Barrier, InmemStorage]:
    physical = physical or InmemStorage()
    b = Barrier(physical)
    await b.initialize(ROOT)
    await b.unseal(ROOT)
    return b, physical


def physical_bytes(physical: InmemStorage) -> bytes:
    return b"".join(k.encode() + v for k, v in physical._data.items())


async def test_conforms_to_storage_protocol() -> None:
    b, _ = await new_barrier()
    assert isinstance(b, Storage)
    assert issubclass(BarrierError, StrongroomError)


async def test_initialize_and_unseal_lifecycle() -> None:
    physical = InmemStorage()
    b = Barrier(physical)
    assert b.sealed
    assert not await b.is_initialized()
    with pytest.raises(NotInitialized):
        await b.unseal(ROOT)
    await b.initialize(ROOT)
    assert await b.is_initialized()
    assert b.sealed  # initialize does not unseal
    with pytest.raises(ValueError):
        await b.initialize(ROOT)
    await b.unseal(ROOT)
    assert not b.sealed


@pytest.mark.parametrize("bad", [b"", b"short", bytes(31), bytes(33)])
async def test_root_key_must_be_32_bytes(bad: bytes) -> None:
    with pytest.raises(ValueError):
        await Barrier(InmemStorage()).initialize(bad)


async def test_round_trip() -> None:
    b, _ = await new_barrier()
    assert await b.get("a/b") is None
    await b.put("a/b", SECRET)
    await b.put("a/c/d", b"")
    await b.put("top", b"\x00\xff" * 1000)
    assert await b.get("a/b") == SECRET
    assert await b.get("a/c/d") == b""
    assert await b.get("top") == b"\x00\xff" * 1000
    assert await b.list("") == ["a/", "core/", "top"]
    assert await b.list("a/") == ["b", "c/"]
    assert await b.list_page("a/", after="b") == ["c/"]
    assert await b.list_page("a/", limit=1) == ["b"]
    await b.delete("a/b")
    assert await b.get("a/b") is None
    await b.delete("a/b")  # missing key is not an error


async def test_values_and_keys_are_not_stored_in_plaintext() -> None:
    b, physical = await new_barrier()
    await b.put("secret/x", SECRET)
    raw = physical._data["secret/x"]
    assert SECRET not in raw
    assert SECRET[:8] not in physical_bytes(physical)
    assert ROOT not in physical_bytes(physical)
    # The keyring itself is encrypted: no JSON or base64 keys visible.
    assert b"keys" not in physical._data[KEYRING_PATH]
    assert physical._data[KEYRING_PATH][:5] == b"\x00\x00\x00\x00\x02"  # term 0 = root key


async def test_ciphertext_layout() -> None:
    b, physical = await new_barrier()
    await b.put("k", SECRET)
    raw = physical._data["k"]
    assert int.from_bytes(raw[:4], "big") == 1
    assert raw[4] == 2
    assert len(raw) == 4 + 1 + 12 + len(SECRET) + 16
    await b.put("k", SECRET)
    assert physical._data["k"][5:17] != raw[5:17]  # fresh nonce each write


async def test_aad_swap_is_detected() -> None:
    b, physical = await new_barrier()
    await b.put("a", SECRET)
    await b.put("b", b"other")
    physical._data["b"] = physical._data["a"]
    with pytest.raises(BarrierError):
        await b.get("b")
    assert await b.get("a") == SECRET


@pytest.mark.parametrize("position", [0, 4, 5, 16, 17, -1])
async def test_tampering_is_detected(position: int) -> None:
    b, physical = await new_barrier()
    await b.put("a", SECRET)
    raw = bytearray(physical._data["a"])
    raw[position] ^= 0x01
    physical._data["a"] = bytes(raw)
    with pytest.raises(BarrierError):
        await b.get("a")


async def test_truncated_ciphertext_is_detected() -> None:
    b, physical = await new_barrier()
    await b.put("a", SECRET)
    for cut in (0, 3, 5, 17, 20):
        physical._data["a"] = physical._data["a"][:cut]
        with pytest.raises(BarrierError):
            await b.get("a")


async def test_sealed_refuses_every_operation() -> None:
    b, _ = await new_barrier()
    await b.put("a", SECRET)
    b.seal()
    assert b.sealed
    b.seal()  # idempotent
    with pytest.raises(Sealed):
        await b.get("a")
    with pytest.raises(Sealed):
        await b.put("a", b"x")
    with pytest.raises(Sealed):
        await b.delete("a")
    with pytest.raises(Sealed):
        await b.list("")
    with pytest.raises(Sealed):
        await b.list_page("")
    with pytest.raises(Sealed):
        async with b.transaction():
            pass
    with pytest.raises(Sealed):
        await b.rotate()
    with pytest.raises(Sealed):
        await b.rekey_root(os.urandom(32))
    with pytest.raises(Sealed):
        await b.reload_keyring()
    with pytest.raises(Sealed):
        b.key_status()
    with pytest.raises(Sealed):
        b.export_keyring()
    # Unsealing again restores access.
    await b.unseal(ROOT)
    assert await b.get("a") == SECRET


async def test_never_unsealed_is_sealed() -> None:
    physical = InmemStorage()
    await Barrier(physical).initialize(ROOT)
    b = Barrier(physical)
    with pytest.raises(Sealed):
        await b.get("a")


async def test_seal_wipes_key_material() -> None:
    b, _ = await new_barrier()
    state = b._shared.state
    assert state is not None
    term = state.keyring.terms[1]
    b.seal()
    assert state.root_key == bytearray(32)
    assert term.key == bytearray(32)
    assert state.keyring.terms == {}


async def test_wrong_root_key_on_unseal() -> None:
    physical = InmemStorage()
    await Barrier(physical).initialize(ROOT)
    b = Barrier(physical)
    with pytest.raises(BarrierError, match="failed to decrypt keyring") as info:
        await b.unseal(bytes(32))
    assert b.sealed
    assert ROOT.hex() not in str(info.value)


async def test_sealed_view_after_transaction_started() -> None:
    b, _ = await new_barrier()
    async with b.transaction() as txn:
        b.seal()
        with pytest.raises(Sealed):
            await txn.get("a")


async def test_rotation() -> None:
    b, physical = await new_barrier()
    await b.put("old", b"old value")
    status = b.key_status()
    assert status["term"] == 1
    assert status["encryptions"] == 1

    assert await b.rotate() == 2
    await b.put("new", b"new value")
    assert int.from_bytes(physical._data["old"][:4], "big") == 1
    assert int.from_bytes(physical._data["new"][:4], "big") == 2
    assert await b.get("old") == b"old value"
    assert await b.get("new") == b"new value"
    assert b.key_status()["term"] == 2
    assert b.key_status()["encryptions"] == 1

    assert await b.rotate() == 3
    # Old terms survive a fresh unseal from storage.
    fresh = Barrier(physical)
    await fresh.unseal(ROOT)
    assert await fresh.get("old") == b"old value"
    assert await fresh.get("new") == b"new value"
    assert fresh.key_status()["term"] == 3


async def test_key_status_install_time_format() -> None:
    b, _ = await new_barrier()
    status = b.key_status()
    assert set(status) == {"term", "install_time", "encryptions"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", status["install_time"])


async def test_second_instance_follows_rotation() -> None:
    first, physical = await new_barrier()
    second = Barrier(physical)
    await second.unseal(ROOT)
    assert await first.rotate() == 2
    await first.put("after", b"written with term 2")
    assert second.key_status()["term"] == 1
    assert await second.get("after") == b"written with term 2"
    assert second.key_status()["term"] == 2
    # And the second instance's writes now use the new term too.
    await second.put("x", b"y")
    assert int.from_bytes(physical._data["x"][:4], "big") == 2


async def test_unknown_term_after_reload_is_an_error() -> None:
    b, physical = await new_barrier()
    await b.put("a", SECRET)
    raw = bytearray(physical._data["a"])
    raw[:4] = (99).to_bytes(4, "big")
    physical._data["a"] = bytes(raw)
    with pytest.raises(BarrierError, match="unknown key term"):
        await b.get("a")


async def test_rotate_on_stale_instance_does_not_reuse_a_term() -> None:
    first, physical = await new_barrier()
    second = Barrier(physical)
    await second.unseal(ROOT)
    assert await first.rotate() == 2
    await first.put("a", b"term 2")
    assert await second.rotate() == 3  # merged with the stored keyring first
    assert await second.get("a") == b"term 2"
    assert await first.get("a") == b"term 2"


async def test_rekey_root() -> None:
    b, physical = await new_barrier()
    await b.put("a", SECRET)
    new_root = os.urandom(32)
    await b.rekey_root(new_root)
    assert await b.get("a") == SECRET  # still unsealed

    fresh = Barrier(physical)
    with pytest.raises(BarrierError):
        await fresh.unseal(ROOT)
    await fresh.unseal(new_root)
    assert await fresh.get("a") == SECRET

    # The in-memory root key changed too: rotation persists under the new key.
    await b.rotate()
    again = Barrier(physical)
    await again.unseal(new_root)
    assert again.key_status()["term"] == 2


async def test_rekey_root_validates_length() -> None:
    b, _ = await new_barrier()
    with pytest.raises(ValueError):
        await b.rekey_root(b"short")


async def test_export_load_round_trip() -> None:
    b, physical = await new_barrier()
    await b.rotate()
    await b.put("a", SECRET)
    blob = b.export_keyring()
    assert isinstance(blob, bytes)

    worker = Barrier(physical)
    worker.load_keyring(ROOT, blob)
    assert not worker.sealed
    assert await worker.get("a") == SECRET
    assert worker.key_status()["term"] == 2
    # The worker holds the root key: it can follow later rotations.
    await b.rotate()
    await b.put("b", b"term 3")
    assert await worker.get("b") == b"term 3"


async def test_load_keyring_rejects_mismatch_and_garbage() -> None:
    b, physical = await new_barrier()
    blob = b.export_keyring()
    worker = Barrier(physical)
    with pytest.raises(BarrierError):
        worker.load_keyring(bytes(32), blob)
    with pytest.raises(BarrierError):
        worker.load_keyring(ROOT, b"not json")
    doc: dict[str, Any] = json.loads(blob)
    doc["keyring"]["active_term"] = 7
    with pytest.raises(BarrierError):
        worker.load_keyring(ROOT, json.dumps(doc).encode())
    assert worker.sealed


async def test_transaction_commit() -> None:
    b, physical = await new_barrier()
    await b.put("keep", b"1")
    async with b.transaction() as txn:
        await txn.put("t/a", b"A")
        await txn.delete("keep")
        assert await txn.get("t/a") == b"A"
        assert await txn.list("t/") == ["a"]
        assert await b.get("t/a") is None  # not visible outside before commit
    assert await b.get("t/a") == b"A"
    assert await b.get("keep") is None
    assert int.from_bytes(physical._data["t/a"][:4], "big") == 1
    assert b"A" != physical._data["t/a"]


async def test_transaction_rollback() -> None:
    b, physical = await new_barrier()
    await b.put("keep", b"1")
    before = dict(physical._data)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with b.transaction() as txn:
            await txn.put("t/a", b"A")
            await txn.delete("keep")
            raise Boom
    assert physical._data == before
    assert await b.get("t/a") is None
    assert await b.get("keep") == b"1"


async def test_transaction_view_shares_keyring() -> None:
    b, physical = await new_barrier()
    async with b.transaction() as txn:
        await b.rotate()
        await txn.put("x", b"y")
    assert int.from_bytes(physical._data["x"][:4], "big") == 2


async def test_rng_failure_fails_the_write(monkeypatch: pytest.MonkeyPatch) -> None:
    b, physical = await new_barrier()

    def broken(n: int) -> bytes:
        raise OSError("no entropy")

    monkeypatch.setattr(os, "urandom", broken)
    with pytest.raises(OSError):
        await b.put("a", SECRET)
    assert "a" not in physical._data


def test_raw_helpers() -> None:
    key = os.urandom(32)
    blob = encrypt_with(key, b"aad", b"plaintext")
    assert len(blob) == 12 + len(b"plaintext") + 16
    assert decrypt_with(key, b"aad", blob) == b"plaintext"
    with pytest.raises(BarrierError):
        decrypt_with(key, b"other aad", blob)
    with pytest.raises(BarrierError):
        decrypt_with(os.urandom(32), b"aad", blob)
    with pytest.raises(BarrierError):
        decrypt_with(key, b"aad", blob[:-1])
    with pytest.raises(BarrierError):
        decrypt_with(key, b"aad", b"short")
    with pytest.raises(BarrierError):
        encrypt_with(b"short key", b"aad", b"x")


async def test_keyring_changes_refused_inside_transaction() -> None:
    b, physical = await new_barrier()
    with pytest.raises(BarrierError):
        async with b.transaction() as txn:
            await txn.rotate()
    with pytest.raises(BarrierError):
        async with b.transaction() as txn:
            await txn.rekey_root(os.urandom(32))
    assert b.key_status()["term"] == 1
    fresh = Barrier(physical)
    await fresh.unseal(ROOT)
    assert fresh.key_status()["term"] == 1
