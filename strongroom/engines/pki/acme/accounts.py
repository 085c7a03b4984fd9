"""ACME accounts: newAccount (with EAB), update, deactivation, keyChange, orders list."""

from __future__ import annotations

import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from strongroom.engines.pki.acme import jws, state
from strongroom.engines.pki.acme.context import Directory, Reply, Signed, verify_post
from strongroom.engines.pki.acme.problems import AcmeProblem
from strongroom.logical.request import Request

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend
    from strongroom.framework import FieldData

MAX_CONTACTS = 10
ORDERS_PAGE = 100
_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")


def thumbprint_key(directory: Directory, thumbprint: str) -> str:
    return state.thumbprint_index(directory.prefix, thumbprint)


def account_view(directory: Directory, account: state.Account) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": account.status,
        "contact": list(account.contact),
        "orders": directory.url(f"account/{account.id}/orders"),
        "key": account.jwk,
        "createdAt": state.rfc3339(account.created_time),
    }
    if account.tos_agreed:
        out["termsOfServiceAgreed"] = True
    return out


def parse_contacts(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise AcmeProblem("malformed", "contact must be a list of strings")
    if len(raw) > MAX_CONTACTS:
        raise AcmeProblem("invalidContact", f"at most {MAX_CONTACTS} contacts are allowed")
    out: list[str] = []
    for contact in raw:
        if not contact.lower().startswith("mailto:"):
            raise AcmeProblem("unsupportedContact", "only mailto: contacts are supported")
        address = contact[7:]
        if "?" in address or not _EMAIL.match(address):
            raise AcmeProblem("invalidContact", "a contact is not a valid mailto: address")
        out.append("mailto:" + address)
    return out


async def _lookup_key(backend: PkiBackend, directory: Directory, jwk: dict[str, Any]) -> state.Account | None:
    raw = await backend.storage.get(thumbprint_key(directory, jws.thumbprint(jwk)))
    if raw is None:
        return None
    account = await state.load_account(backend.storage, json.loads(raw).get("kid", ""))
    return account if account is not None and account.directory == directory.prefix else None


async def new_account(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    signed = await verify_post(backend, req, directory, "new-account", jwk_allowed=True, kid_allowed=False)
    payload = signed.payload()
    jwk = jws.canonical_jwk(signed.request.jwk or {})
    existing = await _lookup_key(backend, directory, jwk)
    if existing is not None:
        return Reply(account_view(directory, existing), 200, directory.url(f"account/{existing.id}"))
    if payload.get("onlyReturnExisting") is True:
        raise AcmeProblem("accountDoesNotExist", "no account exists with this key")
    contacts = parse_contacts(payload.get("contact"))
    tos = payload.get("termsOfServiceAgreed", False)
    if not isinstance(tos, bool):
        raise AcmeProblem("malformed", "termsOfServiceAgreed must be a boolean")
    eab_raw = payload.get("externalAccountBinding")
    if eab_raw is None and directory.eab_policy != "not-required":
        raise AcmeProblem("externalAccountRequired", "this directory requires external account binding")
    account = state.Account(
        id=state.new_id(),
        directory=directory.prefix,
        jwk=jwk,
        thumbprint=jws.thumbprint(jwk),
        contact=contacts,
        tos_agreed=tos,
    )
    eab_key: state.EabKey | None = None
    if eab_raw is not None:
        eab_key = await _check_eab(backend, directory, eab_raw, jwk, signed.request.url)
        account.eab = {
            "key_id": eab_key.id,
            "directory": eab_key.directory,
            "created_time": eab_key.created_on,
        }
    async with backend.storage.transaction() as txn:
        if eab_key is not None:
            if await txn.get(state.EAB + eab_key.id) is None:  # spent by a concurrent request
                raise AcmeProblem("unauthorized", "the external account binding key was already used")
            await txn.delete(state.EAB + eab_key.id)
        index = thumbprint_key(directory, account.thumbprint)
        raced = await txn.get(index)
        if raced is not None:
            raise AcmeProblem("malformed", "an account with this key was created concurrently", status=409)
        await state.save_account(txn, account)
        await txn.put(index, json.dumps({"kid": account.id}).encode())
    return Reply(account_view(directory, account), 201, directory.url(f"account/{account.id}"))


async def _check_eab(
    backend: PkiBackend, directory: Directory, eab_raw: Any, jwk: dict[str, Any], url: str
) -> state.EabKey:
    found: dict[str, state.EabKey] = {}
    keys: dict[str, state.EabKey | None] = {}
    if isinstance(eab_raw, dict):
        try:
            header = json.loads(jws.b64url_decode(str(eab_raw.get("protected", ""))))
            kid = str(header.get("kid", "")) if isinstance(header, dict) else ""
        except (AcmeProblem, ValueError):
            kid = ""
        if kid:
            keys[kid] = await state.load_eab(backend.storage, kid)

    def hmac_key_for(kid: str) -> bytes | None:
        key = keys.get(kid)
        if key is None or key.directory != directory.prefix:
            return None
        found[kid] = key
        return jws.b64url_decode(key.key)

    kid = jws.verify_eab(eab_raw, jwk, url, hmac_key_for)
    return found[kid]


async def account_update(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    kid = str(d["kid"])
    signed = await verify_post(backend, req, directory, f"account/{kid}", jwk_allowed=False, kid_allowed=True)
    account = _own(signed, kid)
    if signed.request.is_post_as_get():
        return Reply(account_view(directory, account), 200, directory.url(f"account/{kid}"))
    payload = signed.payload()
    status = payload.get("status")
    if status is not None and status not in ("valid", "deactivated"):
        raise AcmeProblem("malformed", "status may only be set to deactivated")
    if "contact" in payload:
        account.contact = parse_contacts(payload["contact"])
    if status == "deactivated":
        account.status = "deactivated"
    await state.save_account(backend.storage, account)
    return Reply(account_view(directory, account), 200, directory.url(f"account/{kid}"))


def _own(signed: Signed, kid: str) -> state.Account:
    account = signed.account
    if account is None or account.id != kid:
        raise AcmeProblem("unauthorized", "the request is signed by another account")
    return account


async def orders_list(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    kid = str(d["kid"])
    rel = f"account/{kid}/orders"
    signed = await verify_post(backend, req, directory, rel, jwk_allowed=False, kid_allowed=True)
    _own(signed, kid)
    ids = await state.list_orders(backend.storage, kid)
    try:
        start = max(0, int(req.query.get("cursor", "0") or 0))
    except ValueError:
        raise AcmeProblem("malformed", "cursor must be a number") from None
    page = ids[start : start + ORDERS_PAGE]
    urls: list[str] = []
    for order_id in page:
        order = await state.load_order(backend.storage, kid, order_id)
        if order is not None and order.status in ("pending", "ready", "processing", "valid"):
            urls.append(directory.url(f"order/{order_id}"))
    reply = Reply({"orders": urls})
    if start + ORDERS_PAGE < len(ids):
        reply.links.append((directory.url(f"{rel}?cursor={start + ORDERS_PAGE}"), "next"))
    return reply


async def key_change(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    """RFC 8555 §7.3.5: the inner JWS, signed by the new key, names the account and old key."""
    signed = await verify_post(backend, req, directory, "key-change", jwk_allowed=False, kid_allowed=True)
    account = signed.account
    assert account is not None
    inner = jws.parse(signed.request.payload_raw, require_nonce=False)
    if inner.jwk is None:
        raise AcmeProblem("malformed", "the inner JWS of a key change must carry the new key (jwk)")
    if "nonce" in inner.protected:
        raise AcmeProblem("malformed", "the inner JWS of a key change must not carry a nonce")
    if inner.url != signed.request.url:
        raise AcmeProblem("malformed", "the inner and outer JWS url headers differ")
    new_jwk = jws.canonical_jwk(inner.jwk)
    jws.public_key(inner.jwk)
    jws.verify(inner, inner.jwk)
    body = inner.payload_json()
    if body.get("account") != signed.request.kid:
        raise AcmeProblem("malformed", "the key change names another account")
    old = body.get("oldKey")
    if not isinstance(old, dict) or jws.canonical_jwk(old) != account.jwk:
        raise AcmeProblem("malformed", "oldKey is not the account's current key")
    new_thumb = jws.thumbprint(new_jwk)
    new_index = thumbprint_key(directory, new_thumb)
    async with backend.storage.transaction() as txn:
        holder = await txn.get(new_index)
        if holder is not None:
            other = json.loads(holder).get("kid", "")
            raise AcmeProblem(
                "malformed",
                "the new key is already in use by an account",
                status=409,
                extra={"_location": directory.url(f"account/{other}")},
            )
        await txn.delete(thumbprint_key(directory, account.thumbprint))
        account.jwk, account.thumbprint = new_jwk, new_thumb
        await state.save_account(txn, account)
        await txn.put(new_index, json.dumps({"kid": account.id}).encode())
    return Reply(account_view(directory, account), 200, directory.url(f"account/{account.id}"))


def new_eab_key(directory: Directory) -> state.EabKey:
    key = jws.b64url_encode(secrets.token_bytes(32))
    return state.EabKey(id=state.new_id(), key=key, directory=directory.prefix)
