"""Vault's JSON envelope and error body, byte for byte where clients care.

Success bodies carry every key even when null; an empty success is 204 unless
there are warnings; an empty LIST is a 404; ``sys/*`` routes that Vault
copies ``data`` to the top level for keep doing so.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from strongroom.logical.errors import PermissionDenied, StrongroomError, multierror
from strongroom.logical.request import Auth, Operation, Request, Response

Headers = list[tuple[bytes, bytes]]


# dataclasses and datetimes go through ``default=str`` as they did with the json module
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _dumps(value: Any) -> bytes:
    """Compact JSON; non-ASCII text as UTF-8, as Go's encoder writes it.

    orjson when it can encode the value; what it refuses (non-string keys, integers
    beyond 64 bits, lone surrogates, nesting past 254) is encoded by the json module
    exactly as before.
    """
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def error_body(errors: list[str], data: Any = None, err: StrongroomError | None = None) -> bytes:
    if isinstance(err, PermissionDenied) and errors:
        errors = [multierror(errors)]
    body: dict[str, Any] = {"errors": errors}
    if data is not None:
        body["data"] = data
    return _dumps(body)


def auth_view(auth: Auth) -> dict[str, Any]:
    view: dict[str, Any] = {
        "client_token": auth.client_token,
        "accessor": auth.accessor,
        "policies": auth.policies,
        "token_policies": auth.token_policies,
        "metadata": auth.metadata or None,
        "lease_duration": auth.lease_duration,
        "renewable": auth.renewable,
        "entity_id": auth.entity_id,
        "token_type": auth.token_type,
        "orphan": auth.orphan,
        "mfa_requirement": auth.mfa_requirement,
        "num_uses": auth.num_uses,
    }
    if auth.identity_policies:
        view["identity_policies"] = auth.identity_policies
    if not auth.token_policies:
        del view["token_policies"]
    return view


def envelope(req: Request, resp: Response) -> dict[str, Any]:
    if resp.wrap_info is not None:
        w = resp.wrap_info
        wrap: dict[str, Any] = {
            "token": w.token,
            "accessor": w.accessor,
            "ttl": w.ttl,
            "creation_time": w.creation_time,
            "creation_path": w.creation_path,
        }
        if w.wrapped_accessor:
            wrap["wrapped_accessor"] = w.wrapped_accessor
        return {
            "request_id": "",
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": None,
            "wrap_info": wrap,
            "warnings": resp.warnings or None,
            "auth": None,
            "mount_type": "",
        }
    secret = resp.secret
    body: dict[str, Any] = {
        "request_id": req.request_id,
        "lease_id": secret.lease_id if secret else "",
        "renewable": secret.renewable if secret else False,
        "lease_duration": secret.ttl if secret else 0,
        "data": resp.data,
        "wrap_info": None,
        "warnings": resp.warnings or None,
        "auth": auth_view(resp.auth) if resp.auth else None,
        "mount_type": req.mount_type if req.mount_type != "system" else "system",
    }
    if resp.copy_data_to_top_level and resp.data:
        for key, value in resp.data.items():
            body.setdefault(key, value)
    return body


def render_response(req: Request, resp: Response | None) -> tuple[int, Headers, bytes]:
    if resp is not None and resp.raw is not None:
        raw = resp.raw
        headers = [(b"content-type", raw.content_type.encode())]
        for name, value in raw.headers.items():
            values = value if isinstance(value, list) else [value]
            headers += [(name.lower().encode(), v.encode()) for v in values]
        return raw.status, headers, raw.body
    extra = [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()] if resp else []
    if req.operation == Operation.LIST and not _list_has_keys(resp):
        if resp is None or not resp.warnings:
            return 404, extra, b'{"errors":[]}'
    if resp is None:
        if req.operation == Operation.READ:
            return 404, extra, b'{"errors":[]}'  # Vault: a read of nothing is "not found"
        return 204, extra, b""
    empty = (
        resp.data is None
        and resp.auth is None
        and resp.wrap_info is None
        and resp.secret is None
        and not resp.warnings
    )
    if empty:
        return (resp.status or 204), extra, b""
    return (resp.status or 200), extra, _dumps(envelope(req, resp))


def _list_has_keys(resp: Response | None) -> bool:
    if resp is None or resp.wrap_info is not None:
        return resp is not None
    data = resp.data
    if not data:
        return False
    keys = data.get("keys")
    if keys:
        return True
    return any(k != "keys" for k in data)
