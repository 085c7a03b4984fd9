"""tidy_acme: drop finished ACME orders, then idle accounts and stale EAB keys.

Order of a run: orders (and their authorizations) whose certificate, or whose own
expiry, lies more than ``safety_buffer`` in the past; authorizations no order needs
any more; then accounts without orders older than ``acme_account_safety_buffer``
are first revoked and, one buffer after that, deleted; unused EAB keys older than
that buffer are deleted too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from strongroom.engines.pki.acme import state
from strongroom.logical.storage import Storage


@dataclass
class AcmeTidyCounts:
    total_acme_account_count: int = 0
    acme_account_deleted_count: int = 0
    acme_account_revoked_count: int = 0
    acme_orders_deleted_count: int = 0


def _finished(order: state.Order, now: float, buffer: int) -> bool:
    if order.status == "valid" and order.cert_expiry:
        return now - order.cert_expiry > buffer
    return now - order.expires > buffer


async def tidy_acme(
    storage: Storage, safety_buffer: int, account_buffer: int, now: float | None = None
) -> AcmeTidyCounts:
    now = time.time() if now is None else now
    counts = AcmeTidyCounts()
    for kid in await state.list_accounts(storage):
        account = await state.load_account(storage, kid)
        if account is None:
            continue
        counts.total_acme_account_count += 1
        needed: set[str] = set()
        remaining = 0
        for order_id in await state.list_orders(storage, kid):
            order = await state.load_order(storage, kid, order_id)
            if order is None:
                continue
            if _finished(order, now, safety_buffer):
                await storage.delete(f"{state.ORDERS}{kid}/{order_id}")
                counts.acme_orders_deleted_count += 1
                continue
            remaining += 1
            needed.update(order.authorization_ids)
        for authz_id in await state.list_authz(storage, kid):
            if authz_id in needed:
                continue
            authz = await state.load_authz(storage, kid, authz_id)
            if authz is None or now - authz.expires > safety_buffer:
                await storage.delete(f"{state.AUTHZ}{kid}/{authz_id}")
        if remaining or now - account.created_time <= account_buffer:
            continue
        if account.status == "valid":
            account.status, account.revoked_time = "revoked", now
            await state.save_account(storage, account)
            counts.acme_account_revoked_count += 1
        elif now - (account.revoked_time or account.created_time) > account_buffer:
            await storage.delete(state.thumbprint_index(account.directory, account.thumbprint))
            await storage.delete(state.ACCOUNTS + kid)
            counts.acme_account_deleted_count += 1
    for key_id in await state.list_eab(storage):
        key = await state.load_eab(storage, key_id)
        if key is not None and now - key.created_on > account_buffer:
            await storage.delete(state.EAB + key_id)
    return counts
