"""Nothing readable at rest: the SQLite file holds neither secret values nor key material."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

from strongroom.core.mounts import MountEntry
from strongroom.physical.sqlite import SqlitePhysical
from strongroom.testing import running_core


def _raw_bytes(db: Path) -> bytes:
    blobs = b""
    for path in db.parent.iterdir():
        if path.name.startswith(db.name):
            blobs += path.read_bytes()
    return blobs


async def test_secret_and_keys_never_stored_in_plaintext(tmp_path: Path) -> None:
    db = tmp_path / "strongroom.db"
    physical = SqlitePhysical({"path": str(db)})
    value = "plaintext-" + secrets.token_hex(16)
    try:
        async with running_core(physical) as h:
            await h.core.enable_mount(MountEntry("secret/", "kv", options={"version": "2"}))
            r = await h.call("POST", "secret/data/app", json={"data": {"password": value}})
            assert r.status_code == 200
            r = await h.call("POST", "cubbyhole/mine", json={"note": value})
            assert r.status_code == 204
            await h.core.barrier.rotate()
            export = json.loads(h.core.barrier.export_keyring())
            key_material = [base64.b64decode(export["root_key"])]
            key_material += [base64.b64decode(t["key"]) for t in export["keyring"]["keys"]]
            assert len(key_material) == 3  # root key + two terms
            root_token = h.root_token
    finally:
        await physical.close()
    raw = _raw_bytes(db)
    assert raw, "the database file should not be empty"
    for needle in [value.encode(), root_token.encode()]:
        assert needle not in raw
    for key in key_material:
        assert len(key) == 32
        assert key not in raw
        assert base64.b64encode(key) not in raw
        assert key.hex().encode() not in raw
